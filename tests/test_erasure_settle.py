"""Erasures of the same subject settle each other; state file and listing stay true.

* an approved erasure is not INCOMPLETE because another pending request
  keeps the same address (it settles that request instead);
* a later clean erasure covering an earlier INCOMPLETE one clears it;
* after an erasure (and other GDPR changes) the state file is current;
* an erasure refused by a legal hold is listed, with the hold's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gdpr_kit import MARA_EMAIL, MARA_PHONE, Vault, sample_vault
from vault import audit, statefile, store


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return sample_vault(tmp_path)


def _four_eyes(v: Vault) -> None:
    cfg = v.pair.vault.config  # type: ignore[attr-defined]
    cfg.write_text(cfg.read_text().replace("four_eyes = false", "four_eyes = true"))


def _as(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(audit, "identify", lambda: audit.Operator(name, "loginuid"))


def _listing(v: Vault) -> dict[str, Any]:
    items = v.cli("erase", "list", "--json").json()["erasures"]  # type: ignore
    return {e["id"]: e for e in items}


def _erasure_findings(v: Vault) -> list[Any]:
    rep = v.cli("vault", "status", "--json").json()
    return [f for f in rep["findings"] if f["check"] == "erasure"]  # type: ignore


def test_a_pending_request_for_the_same_subject_is_settled_not_a_trace(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    _four_eyes(vault)
    _as(monkeypatch, "alice")
    first = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "ticket 1", "--yes")
    second = vault.cli("erase", "--email", MARA_EMAIL, "--phone", MARA_PHONE,
                       "--reason", "ticket 2", "--yes")
    assert first.code == second.code == 0
    _as(monkeypatch, "bob")

    r = vault.cli("erase", "approve", "E-0002", "--yes")

    assert r.code == 0, r.err
    items = _listing(vault)
    assert items["E-0002"]["status"] == "done"
    assert items["E-0001"]["status"] == "done"
    assert items["E-0001"]["note"].startswith("settled by E-0002")
    assert _erasure_findings(vault) == []
    with vault.conn() as conn:
        assert conn.execute("SELECT count(*) FROM erasure_subjects").fetchone()[0] == 0


def test_a_later_clean_erasure_clears_an_earlier_incomplete_one(vault: Vault) -> None:
    # an operator typed the address into a case note: the first erasure cannot finish
    assert vault.cli("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL,
                     "--note", f"wrote from {MARA_EMAIL}").code == 0
    r = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "ticket 1", "--yes")
    assert r.code == 1 and "INCOMPLETE" in r.err
    assert [f["level"] for f in _erasure_findings(vault)] == ["CRITICAL"]
    with vault.conn() as conn, store.transaction(conn):
        conn.execute("UPDATE dsar_cases SET note = 'see ticket 1'")  # the DPO's fix

    # a wider erasure (another identifier set): its clean scan covers the first one
    r = vault.cli("erase", "--email", MARA_EMAIL, "--phone", MARA_PHONE,
                  "--reason", "ticket 1 again", "--yes")

    assert r.code == 0, r.err
    items = _listing(vault)
    assert items["E-0001"]["status"] == "done"
    assert items["E-0001"]["note"].startswith("completed by E-0002")
    assert _erasure_findings(vault) == []


def _state_current(v: Vault) -> bool:
    return bool(statefile.describe(v.home)["current"])


def test_the_state_file_is_current_after_an_erasure(vault: Vault,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    r = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "ticket 1", "--yes")
    assert r.code == 0, r.err
    assert _state_current(vault)
    status = vault.cli("vault", "status", "--json").json()
    assert not [f for f in status["findings"] if f["check"] == "state_file"]  # type: ignore

    _four_eyes(vault)
    _as(monkeypatch, "alice")
    assert vault.cli("erase", "--email", "ana.example@example.org", "--reason", "t2",
                     "--yes").code == 0
    assert _state_current(vault), "a pending request is state too"
    _as(monkeypatch, "bob")
    assert vault.cli("erase", "approve", "E-0002", "--yes").code == 0
    assert _state_current(vault)


@pytest.mark.parametrize("args", [
    ("hold", "add", "H1", "--reason", "claim", "--source", "sample"),
    ("restrict", "--email", "ana.example@example.org", "--reason", "disputed"),
    ("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL),
])
def test_other_gdpr_changes_leave_the_state_file_current(vault: Vault,
                                                         args: tuple[str, ...]) -> None:
    assert vault.cli(*args).code == 0
    assert _state_current(vault)
    if args[0] == "hold":
        assert vault.cli("hold", "release", "H1").code == 0
    elif args[0] == "dsar":
        assert vault.cli("dsar", "close", "DSAR-2024-0001").code == 0
    assert _state_current(vault)


def test_an_erasure_refused_by_a_hold_is_listed(vault: Vault) -> None:
    assert vault.cli("hold", "add", "LITIGATION-7", "--reason", "claim", "--source",
                     "sample").code == 0

    r = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "ticket 1", "--yes")

    assert r.code == 4 and "LITIGATION-7" in r.err
    [item] = _listing(vault).values()
    assert item["status"] == "refused" and "LITIGATION-7" in item["note"]
    listed = vault.cli("erase", "list")
    assert "refused" in listed.out and "LITIGATION-7" in listed.out
    with vault.conn() as conn:  # nothing kept to erase later
        assert conn.execute("SELECT count(*) FROM erasure_subjects").fetchone()[0] == 0
    assert _state_current(vault)
    # a dry run under the hold lists nothing new
    assert vault.cli("erase", "--email", MARA_EMAIL, "--dry-run").code == 4
    assert len(_listing(vault)) == 1
