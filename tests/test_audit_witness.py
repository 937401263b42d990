"""Cutting the newest audit entries off is caught: the state file witnessed the head.

The attacker here deletes the newest rows and resets ``sqlite_sequence``
too, which the hash chain alone cannot see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gdpr_kit import MARA_EMAIL, Vault, sample_vault
from vault import audit, statefile, store


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    v = sample_vault(tmp_path)
    for _ in range(3):
        assert v.cli("subject", "find", "--email", MARA_EMAIL).code == 0
    assert v.cli("hold", "add", "H1", "--reason", "claim", "--source", "sample").code == 0
    assert statefile.describe(v.home)["current"]
    return v


def _witnessed(v: Vault) -> int:
    with v.conn() as conn:
        recorded = audit.witness(conn)
    assert recorded is not None, audit.witness_note
    return recorded[0]


def _cut(v: Vault, keep: int) -> None:
    with v.conn() as conn, store.transaction(conn):
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'", (keep,))


def test_an_intact_log_agrees_with_the_state_file(vault: Vault) -> None:
    r = vault.cli("audit", "verify", "--json")
    assert r.code == 0, r.err
    assert r.json()["state_file_compared"] is True  # type: ignore


def test_cutting_off_the_newest_entries_is_caught(vault: Vault) -> None:
    _cut(vault, _witnessed(vault) - 2)

    r = vault.cli("audit", "verify")
    assert r.code == 3
    assert "the state file recorded" in r.err and "newest entries were removed" in r.err
    status = vault.cli("vault", "status", "--json")
    assert status.code == 2
    assert [f["level"] for f in status.json()["findings"]  # type: ignore
            if f["check"] == "audit"] == ["CRITICAL"]


def test_a_rewritten_entry_at_the_recorded_head_is_caught(vault: Vault) -> None:
    n = _witnessed(vault)
    with vault.conn() as conn, store.transaction(conn):
        # rewrite the newest entries into a chain that holds by itself
        conn.execute("DELETE FROM audit_log WHERE seq >= ?", (n,))
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'", (n - 1,))
        audit.append(conn, "search", purpose="nothing to see")
    r = vault.cli("audit", "verify")
    assert r.code == 3 and "differs from the head the state file recorded" in r.err


def test_entries_after_the_last_save_are_not_witnessed(vault: Vault) -> None:
    # a known limit (audit.py's docstring): searches alone do not save the state file
    n = _witnessed(vault)
    assert vault.cli("subject", "find", "--email", MARA_EMAIL).code == 0
    _cut(vault, n)
    assert vault.cli("audit", "verify").code == 0


def test_without_a_state_file_verify_says_the_end_is_unchecked(vault: Vault) -> None:
    """A deleted state file must not let a cut log pass as fully checked."""
    _cut(vault, _witnessed(vault) - 2)
    statefile.path_of(vault.home).unlink()

    r = vault.cli("audit", "verify", "--json")
    assert r.code == 0, r.err  # the chain itself holds
    assert r.json()["state_file_compared"] is False  # type: ignore
    assert "there is no state file" in r.err and "cut off the end" in r.err
    status = vault.cli("vault", "status", "--json")
    assert any(f["check"] == "state_file" and "audit entries cut off" in f["message"]
               for f in status.json()["findings"]), status.out  # type: ignore
