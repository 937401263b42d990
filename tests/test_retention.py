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


# -- a purge sticks (vault.purges) -----------------------------------------------------------

MIDDLE = "2022-06-01T10:00:00Z"  # later than OLD, yet past a 365-day period


def _next_bundle(pair: Pair, root: Path, convs: list[dict[str, Any]]) -> Any:
    """``convs`` sealed as web's next bundle on a new stick, and that stick ingested."""
    media_root = stick(root)
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        seq, sha = conn.execute("SELECT sequence, sha256 FROM bundles WHERE source = 'web' "
                                "ORDER BY sequence DESC LIMIT 1").fetchone()
    Chain(pair, outbox(media_root), last={"web": (seq, sha)}).seal(convs)
    [out] = ingest.ingest_media(pair.vault_path, media_root)
    assert out.status == "ingested", out.reason
    return out


def _digest(pair_home: Path) -> str:
    r = run_cli("vault", "digest", "--home", pair_home)
    assert r.code == 0, r.err
    return r.out.strip()


def test_a_purged_conversation_met_again_stays_purged_and_is_counted(
        aged: Pair, tmp_path: Path) -> None:
    _apply(aged)
    archived = sorted((aged.vault_path / "archive" / "web").glob("*.cvb"))

    again = run_cli("vault", "ingest", *archived, "--home", aged.vault_path)
    out = _next_bundle(aged, tmp_path / "re-export",
                       [conv("old1", ["xyzzyoldsecret one"], at=OLD),
                        conv("old2", ["second old"], at=OLD, email="b@example.org",
                             phone=None)])

    assert again.code == 0 and "duplicate" in again.out  # the same file is never re-read
    assert out.counts["purged"] == 2 and out.counts["new"] == 0
    assert _ids(aged) == ["app-old", "new1"]
    with store.open_store(aged.vault_path / store.FILE_NAME) as conn:
        marks = conn.execute("SELECT hash, last_at FROM retention_purges").fetchall()
        detail = conn.execute("SELECT detail FROM audit_log WHERE action = "
                              "'retention.purge'").fetchone()[0]
    assert len(marks) == 2 and {last for _, last in marks} == {OLD}
    assert all(len(h) == 64 and "old" not in h for h, _ in marks)  # a hash, never the id
    assert '"marked":2' in detail.replace(" ", "")


def test_the_ingest_line_counts_what_was_left_out_as_purged(aged: Pair,
                                                             tmp_path: Path) -> None:
    _apply(aged)
    first, second = stick(tmp_path / "first"), stick(tmp_path / "second")
    with store.open_store(aged.vault_path / store.FILE_NAME) as conn:
        sha = conn.execute("SELECT sha256 FROM bundles WHERE source = 'web'").fetchone()[0]
    chain = Chain(aged, outbox(first), last={"web": (1, sha)})
    chain.seal([conv("old1", ["xyzzyoldsecret one"], at=OLD), conv("fresh", ["hi"], at=NEW)])
    chain.folder = outbox(second)
    chain.seal([conv("old2", ["second old"], at=OLD, email="b@example.org", phone=None)])

    plain = run_cli("vault", "ingest", first, "--home", aged.vault_path)
    doc = run_cli("vault", "ingest", second, "--json", "--home", aged.vault_path)

    assert plain.code == 0 and doc.code == 0, plain.err + doc.err
    assert "2 conv, 1 msg, 1 left out (purged)" in plain.out
    assert "1 left out (purged)" in plain.err
    assert doc.json()["summary"]["left_out_purged"] == 1
    assert _ids(aged) == ["app-old", "fresh", "new1"]


def test_rebuild_after_a_purge_and_a_later_hold_equals_live(aged: Pair,
                                                            tmp_path: Path) -> None:
    _apply(aged)
    home = ("--home", str(aged.vault_path))
    assert run_cli("hold", "add", "lit-web", "--source", "web", "--reason", "claim",
                   *home).code == 0
    new = tmp_path / "rebuilt"

    r = run_cli("vault", "rebuild", *home, "--into", new, "--json")

    assert r.code == 0, r.err
    assert r.json()["purged_left_out"] == 2 and r.json()["purged"] == 0
    with store.open_store(new / store.FILE_NAME) as conn:
        rebuilt = sorted(c for (c,) in conn.execute("SELECT conversation_id FROM conversations"))
    assert rebuilt == _ids(aged) == ["app-old", "new1"]
    assert _digest(new) == _digest(aged.vault_path)
    assert run_cli("retention", "apply", "--json", "--home", new).json()["totals"] \
        ["purged"] == 0


def test_a_conversation_active_after_its_purge_is_stored(aged: Pair, tmp_path: Path) -> None:
    _apply(aged)

    out = _next_bundle(aged, tmp_path / "resumed",
                       [conv("old1", ["xyzzyoldsecret one", "back again"], at=MIDDLE),
                        conv("old2", ["second old"], at=OLD, email="b@example.org",
                             phone=None)])

    assert out.counts["new"] == 1 and out.counts["purged"] == 1
    assert _ids(aged) == ["app-old", "new1", "old1"]
    # expired again: purged again, its marker moved up to the later activity
    assert _apply(aged)["totals"]["purged"] == 1
    again = _next_bundle(aged, tmp_path / "replay",
                         [conv("old1", ["xyzzyoldsecret one", "back again"], at=MIDDLE),
                          conv("old1x", ["other"], at=MIDDLE)])
    assert again.counts["purged"] == 1 and again.counts["new"] == 1
    with store.open_store(aged.vault_path / store.FILE_NAME) as conn:
        assert sorted(last for (last,) in conn.execute(
            "SELECT last_at FROM retention_purges")) == [OLD, MIDDLE]
    later = _next_bundle(aged, tmp_path / "later",
                         [conv("old1", ["back again", "and now"], at=NEW)])
    assert later.counts["new"] == 1 and "old1" in _ids(aged)


def test_a_drill_counts_purged_conversations_after_the_policy_is_lengthened(
        aged: Pair) -> None:
    """The purge markers, not today's policy, say what retention removed."""
    _apply(aged)
    cfg = aged.vault.config
    cfg.write_text(cfg.read_text().replace("retention_days = 365", "retention_days = 36500"))
    r = run_cli("drill", "--all", "--json", "--home", aged.vault_path)
    assert r.code == 0, r.out
    body = r.json()["body"]  # type: ignore[index]
    assert body["mismatches"] == [] and body["counts"]["purged"] == 2
