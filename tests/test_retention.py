"""Retention: expired conversations purged per source, legal holds win, policies re-stamp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, run_cli
from gdpr_kit import traces
from vault import ingest, store
from vault_kit import Chain, conv, outbox, stick

OLD, NEW = "2020-01-10T10:00:00Z", "2099-01-10T10:00:00Z"


def _config(pair: Pair, text: str) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text() + text)


@pytest.fixture
def aged(pair: Pair, tmp_path: Path) -> Pair:
    _config(pair, '\n[sources."web"]\nretention_days = 365\n')
    media_root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media_root))
    chain.seal([conv("old1", ["xyzzyoldsecret one"], at=OLD),
                conv("old2", ["second old"], at=OLD, email="b@example.org", phone=None),
                conv("new1", ["recent"], at=NEW)])
    chain.seal([conv("app-old", ["kept forever"], at=OLD)], source="app")
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def _apply(pair: Pair, *extra: str) -> dict[str, Any]:
    r = run_cli("retention", "apply", *extra, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return r.json()  # type: ignore


def _ids(pair: Pair) -> list[str]:
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        return sorted(c for (c,) in conn.execute("SELECT conversation_id FROM conversations"))


def test_dry_run_reports_and_changes_nothing(aged: Pair) -> None:
    rep = _apply(aged, "--dry-run")
    assert rep["sources"]["web"]["purged"] == 2 and "app" not in rep["sources"]
    assert _ids(aged) == ["app-old", "new1", "old1", "old2"]


def test_expired_conversations_are_purged_securely(aged: Pair) -> None:
    db = aged.vault_path / store.FILE_NAME
    with store.open_store(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert traces([db], [b"xyzzyoldsecret"])  # there before

    rep = _apply(aged)

    assert rep["sources"]["web"] == {"expired": 2, "purged": 2, "messages": 2, "held": 0,
                                     "holds": []}
    assert rep["totals"]["purged"] == 2 and rep["scrub"]["wal_truncated"]
    assert _ids(aged) == ["app-old", "new1"]
    assert traces([db, db.with_name(db.name + "-wal")], [b"xyzzyoldsecret"]) == {}
    with store.open_store(db) as conn:
        assert conn.execute("SELECT action FROM audit_log ORDER BY seq DESC LIMIT 1"
                            ).fetchone()[0] == "retention.purge"
    assert _apply(aged)["totals"]["purged"] == 0


def test_legal_hold_wins_until_released(aged: Pair) -> None:
    home = ("--home", str(aged.vault_path))
    assert run_cli("hold", "add", "CASE-9", "--reason", "court order", "--conversation",
                   "web/old1", *home).code == 0

    rep = _apply(aged)

    assert rep["sources"]["web"]["held"] == 1 and rep["sources"]["web"]["holds"] == ["CASE-9"]
    assert _ids(aged) == ["app-old", "new1", "old1"]
    assert run_cli("hold", "release", "CASE-9", *home).code == 0
    assert _apply(aged)["totals"]["purged"] == 1
    assert _ids(aged) == ["app-old", "new1"]


def test_a_changed_policy_restamps_what_is_stored(aged: Pair) -> None:
    _apply(aged)
    _config(aged, '\n[sources."app"]\nretention_days = 30\n')

    rep = _apply(aged)

    assert rep["restamped"] == {"app": 1}
    assert rep["sources"]["app"]["purged"] == 1
    assert _ids(aged) == ["new1"]
