"""``audit show`` and ``audit verify``; tampering with any single row is detected.

Every GDPR operation leaves an entry; ``audit verify`` exits 3 and names the
first broken entry when any row was changed, removed or reordered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gdpr_kit import MARA_EMAIL, Vault, sample_vault
from vault import store


@pytest.fixture
def busy(tmp_path: Path) -> Vault:
    """A vault where every kind of GDPR action has happened once."""
    v = sample_vault(tmp_path)
    steps = [
        ("subject", "find", "--email", MARA_EMAIL, "--purpose", "check"),
        ("search", "refund"),
        ("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL),
        ("dsar", "export", "DSAR-2024-0001", "--out", str(tmp_path / "pkg")),
        ("hold", "add", "H1", "--reason", "claim", "--source", "sample"),
        ("erase", "--email", MARA_EMAIL, "--reason", "request", "--yes"),
        ("hold", "release", "H1"),
        ("restrict", "--email", "ana.example@example.org", "--reason", "disputed"),
        ("retention", "apply"),
        ("erase", "--email", MARA_EMAIL, "--reason", "request", "--yes"),
    ]
    for args in steps:
        r = v.cli(*args)
        assert r.code in (0, 4), (args, r.err)
    return v


def test_every_operation_is_in_the_log(busy: Vault) -> None:
    r = busy.cli("audit", "show", "--limit", "100", "--json")
    assert r.code == 0
    out = r.json()
    actions = [e["action"] for e in reversed(out["entries"])]  # type: ignore
    for action in ("ingest", "subject.find", "search", "dsar.open", "dsar.export",
                   "hold.add", "erase.refused", "hold.release", "restrict",
                   "retention.purge", "erase.request", "erase"):
        assert action in actions, action
    assert out["head"] == out["entries"][0]["hash"]  # type: ignore
    assert all(e["operator"] for e in out["entries"])  # type: ignore
    text = busy.cli("audit", "show", "--action", "erase*").out
    assert "erase.refused" in text and "search" not in text


def test_verify_passes_on_an_intact_log(busy: Vault) -> None:
    r = busy.cli("audit", "verify", "--json")
    assert r.code == 0 and r.json()["ok"] is True  # type: ignore


def test_show_says_why_a_filter_found_nothing(busy: Vault) -> None:
    typo = busy.cli("audit", "show", "--action", "eras")
    assert typo.code == 0 and "no entry with action 'eras'" in typo.err
    assert busy.cli("audit", "show", "--limit", "-1").code == 2  # not "all of them"
    assert "no entry" not in busy.cli("audit", "show", "--action", "erase*").err


_COLUMNS = ["at", "operator", "action", "target", "purpose", "detail", "prev_hash", "hash"]


def _rows(v: Vault) -> int:
    with v.conn() as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])


def test_changing_any_field_of_any_row_is_detected(busy: Vault) -> None:
    n = _rows(busy)
    with busy.conn() as conn:
        original = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
    cases = 0
    for seq in range(1, n + 1):
        for column in _COLUMNS:
            with busy.conn() as conn:
                conn.execute(f"UPDATE audit_log SET {column} = coalesce({column}, '') || 'x' "
                             "WHERE seq = ?", (seq,))
            r = busy.cli("audit", "verify")
            assert r.code == 3, (seq, column)
            assert f"entry {seq}" in r.err, (seq, column, r.err)
            with busy.conn() as conn, store.transaction(conn):
                conn.execute("DELETE FROM audit_log")
                conn.executemany(f"INSERT INTO audit_log VALUES ({','.join('?' * 9)})",
                                 original)
            cases += 1
    assert cases == n * len(_COLUMNS)
    assert busy.cli("audit", "verify").code == 0


@pytest.mark.parametrize("how", ["remove-middle", "remove-newest", "swap"])
def test_removing_or_reordering_rows_is_detected(busy: Vault, how: str) -> None:
    n = _rows(busy)
    with busy.conn() as conn:
        if how == "remove-middle":
            conn.execute("DELETE FROM audit_log WHERE seq = ?", (n // 2,))
        elif how == "remove-newest":
            conn.execute("DELETE FROM audit_log WHERE seq = ?", (n,))
        else:
            a = conn.execute("SELECT * FROM audit_log WHERE seq = 2").fetchone()
            b = conn.execute("SELECT * FROM audit_log WHERE seq = 3").fetchone()
            conn.execute("DELETE FROM audit_log WHERE seq IN (2, 3)")
            conn.execute(f"INSERT INTO audit_log VALUES ({','.join('?' * 9)})", (2, *b[1:]))
            conn.execute(f"INSERT INTO audit_log VALUES ({','.join('?' * 9)})", (3, *a[1:]))
    r = busy.cli("audit", "verify", "--json")
    assert r.code == 3
    assert r.json()["error"] == "audit_broken"  # type: ignore
