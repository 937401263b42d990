"""The hash-chained audit log: any single change, removal or reordering is caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import Pair
from vault import audit, audit_hook, store, tombstones

COLUMNS = ["at", "operator", "action", "target", "purpose", "detail", "prev_hash", "hash"]
N = 6


@pytest.fixture
def log(tmp_path: Path) -> sqlite3.Connection:
    conn = store.open_store(tmp_path / "store.db", create=True)
    for i in range(N):
        audit.append(conn, "search" if i % 2 else "export", target=f"case:{i}",
                     purpose="DSAR 2024-17", detail={"hits": i})
    assert audit.verify(conn) is None
    return conn


def test_entries_chain_and_head_moves(log: sqlite3.Connection) -> None:
    rows = log.execute("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(1, N + 1))
    assert rows[0][1] == audit.GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, N))
    assert audit.head(log) == rows[-1][2]
    new = audit.append(log, "erase", target="email:abc")
    assert audit.head(log) == new != rows[-1][2]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("row", range(1, N + 1))
def test_any_changed_field_of_any_entry_is_caught(log: sqlite3.Connection, row: int,
                                                  column: str) -> None:
    old = log.execute(f"SELECT {column} FROM audit_log WHERE seq = ?", (row,)).fetchone()[0]
    new = (old or "") + "x" if column != "detail" else '{"hits":999}'
    log.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", (new, row))

    broken = audit.verify(log)

    assert broken is not None and broken.seq == row, broken


@pytest.mark.parametrize("row", range(1, N + 1))
def test_any_removed_entry_is_caught(log: sqlite3.Connection, row: int) -> None:
    log.execute("DELETE FROM audit_log WHERE seq = ?", (row,))

    broken = audit.verify(log)

    assert broken is not None and broken.seq == row
    assert "missing" in broken.problem or "chain" in broken.problem


@pytest.mark.parametrize("a,b", [(1, 2), (2, 5), (5, 6), (1, 6)])
def test_reordered_entries_are_caught(log: sqlite3.Connection, a: int, b: int) -> None:
    cols = ", ".join(COLUMNS)
    ra = log.execute(f"SELECT {cols} FROM audit_log WHERE seq = ?", (a,)).fetchone()
    rb = log.execute(f"SELECT {cols} FROM audit_log WHERE seq = ?", (b,)).fetchone()
    sets = ", ".join(f"{c} = ?" for c in COLUMNS)
    log.execute(f"UPDATE audit_log SET {sets} WHERE seq = ?", (*rb, a))
    log.execute(f"UPDATE audit_log SET {sets} WHERE seq = ?", (*ra, b))

    broken = audit.verify(log)

    assert broken is not None and broken.seq == a


def test_renumbered_entries_are_caught(log: sqlite3.Connection) -> None:
    log.execute("DELETE FROM audit_log WHERE seq = 3")
    log.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    log.execute("UPDATE sqlite_sequence SET seq = seq - 1 WHERE name = 'audit_log'")
    broken = audit.verify(log)
    assert broken is not None and broken.seq == 3


def test_append_inside_a_rolled_back_transaction_leaves_nothing(log: sqlite3.Connection) -> None:
    head = audit.head(log)
    with pytest.raises(RuntimeError):
        with store.transaction(log):
            audit.append(log, "erase", target="email:abc")
            raise RuntimeError("the erasure failed")
    assert audit.head(log) == head and audit.verify(log) is None


def test_operator_never_comes_from_sudo_user(log: sqlite3.Connection,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # anyone can set SUDO_USER: naming someone else there must change nothing
    monkeypatch.setenv("SUDO_USER", "dpo-anna")
    audit.append(log, "search")
    assert log.execute("SELECT operator FROM audit_log ORDER BY seq DESC").fetchone()[0] != \
        "dpo-anna"
    assert audit.operator() not in ("", "dpo-anna")


def test_login_uid_wins_and_the_entry_says_so(log: sqlite3.Connection,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "login_uid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "4242")
    assert audit.identify() == audit.Operator("root", "loginuid")
    audit.append(log, "search", detail={"hits": 1})
    who, detail = log.execute("SELECT operator, detail FROM audit_log ORDER BY seq DESC"
                              ).fetchone()
    assert who == "root" and '"operator_from":"loginuid"' in detail and '"hits":1' in detail
    assert audit.verify(log) is None


def test_without_a_login_uid_the_real_uid_then_sudo_uid_for_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "login_uid", lambda: None)
    monkeypatch.setenv("SUDO_UID", "4242")
    monkeypatch.setattr(audit.os, "getuid", lambda: 0)
    assert audit.identify() == audit.Operator("uid:4242", "sudo_uid")
    # SUDO_UID is only believed when the real uid is root (sudo set it)
    monkeypatch.setattr(audit.os, "getuid", lambda: 4343)
    assert audit.identify() == audit.Operator("uid:4343", "uid")
    monkeypatch.setenv("SUDO_UID", "not a number")
    monkeypatch.setattr(audit.os, "getuid", lambda: 0)
    assert audit.identify() == audit.Operator("root", "uid")


def test_identifier_targets_are_keyed_hashes(pair: Pair) -> None:
    conn = store.open_store(pair.vault_path / store.FILE_NAME)
    try:
        target = audit.identifier_target(pair.vault_path, conn, "email", "mara@example.org")
        again = audit.identifier_target(pair.vault_path, conn, "email", "mara@example.org")
        other = audit.identifier_target(pair.vault_path, conn, "email", "ana@example.org")
        key = tombstones.load_key(pair.vault_path, conn)
    finally:
        conn.close()
    assert target.startswith("email:") and "mara" not in target and "example" not in target
    assert target == again != other
    assert target[6:] not in key.hash(tombstones.PURPOSE_TOMBSTONE, "email",
                                      "mara@example.org")


def test_key_changes_reach_the_vault_log_through_the_hook(pair: Pair) -> None:
    audit_hook.record(pair.vault_path, "key-trust", target="fp:ABCD", detail={"role": "dpo"})
    audit_hook.record(pair.exporter_path, "key-trust", target="fp:ABCD")  # no store: no-op
    conn = store.open_store(pair.vault_path / store.FILE_NAME)
    try:
        rows = conn.execute("SELECT action, target, detail FROM audit_log").fetchall()
        how = audit.identify().how
        assert rows == [("key-trust", "fp:ABCD", f'{{"operator_from":"{how}","role":"dpo"}}')]
        assert audit.verify(conn) is None
    finally:
        conn.close()
    assert not (pair.exporter_path / "store.db").exists()
