"""Restore drills: a healthy vault passes, every kind of damage is found, status follows."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from vault import audit, ingest, signed, statefile, statehook, store, timestamps, tombstones
from vault import drillreports, vaultstatus
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture
def filled(pair: Pair, tmp_path: Path) -> Pair:
    """Two sources, four bundles; c1 grows in a later bundle (its first version superseded)."""
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["hello"]), conv("c2", ["hi"], email="erase.me@example.org")])
    ch.seal([conv("c1", ["hello", "more"]), conv("c3", ["third"], email="c3@example.org")])
    ch.seal([conv("a1", ["app"], email="a1@example.org")], source="app")
    ch.seal([conv("a2", ["app two"], email="a2@example.org")], source="app")
    outs = ingest.ingest_media(pair.vault_path, media_root)
    assert [o.status for o in outs] == ["ingested"] * 4
    return pair


def run_drill(cli: Any, pair: Pair, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli("drill", "--home", pair.vault_path, "--json", *args)
    return res.code, res.json()


def test_healthy_vault_passes_and_report_is_signed_kept_and_audited(filled: Pair,
                                                                   cli: Any) -> None:
    code, report = run_drill(cli, filled, "--all")
    body = report["body"]

    assert code == 0 and body["passed"] and body["mismatches"] == []
    c = body["counts"]
    assert len(body["bundles"]) == 4
    assert c["records"] == 6 and c["superseded"] == 1 and c["restored"] == 5
    assert c["matched"] == c["compared"] and c["compared"] == 5 + 5
    assert set(body["steps"]) == {"select", "archive", "restore_create", "restore_open",
                                  "compare"}
    assert body["recovery_seconds"] == pytest.approx(body["steps"]["restore_create"]
                                                     + body["steps"]["restore_open"])
    own = statefile.OwnKey(filled.vault.public())
    signed.verify(report, own, "vault", drillreports.KIND, "report")

    listed = cli("drill", "list", "--home", filled.vault_path, "--json").json()["drills"]
    assert [(d["drill_id"], d["passed"], d["valid"]) for d in listed] == \
        [(body["drill_id"], True, True)]
    kept = filled.vault_path / "reports" / listed[0]["file"]
    assert json.loads(kept.read_text())["body"] == body
    with store.open_store(filled.vault_path / store.FILE_NAME) as conn:
        actions = [e["action"] for e in audit.entries(conn)]
        assert audit.verify(conn) is None
    assert actions[:2] == ["drill", "restore.create"]
    assert not list((filled.vault_path / "staging").iterdir())  # scratch removed


def test_sample_picks_that_many_bundles(filled: Pair, cli: Any) -> None:
    code, report = run_drill(cli, filled, "--sample", "2")
    assert code == 0 and len(report["body"]["bundles"]) == 2
    assert report["body"]["mode"] == "sample 2"


def test_corrupted_archived_bundle_is_a_mismatch_and_fails(filled: Pair, cli: Any) -> None:
    archived = filled.vault_path / "archive" / "web" / "web-00000002.cvb"
    data = bytearray(archived.read_bytes())
    data[len(data) // 2] ^= 0x01
    archived.write_bytes(bytes(data))

    res = cli("drill", "--home", filled.vault_path, "--all")

    assert res.code == 3
    assert "FAILED" in res.out and "MISMATCH archive_unreadable" in res.out
    body = drillreports.reports(filled.vault_path)[0]
    assert not body["passed"] and body["mismatches"] == 1
    rep = vaultstatus.report(filled.vault_path)
    assert rep["status"] == "CRITICAL"
    assert any(f["check"] == "drill" and "FAILED" in f["message"] for f in rep["findings"])


def test_altered_store_record_is_found(filled: Pair, cli: Any) -> None:
    with store.open_store(filled.vault_path / store.FILE_NAME) as conn:
        conn.execute("UPDATE conversations SET record = replace(record, 'third', 'THIRD') "
                     "WHERE conversation_id = 'c3'")
    code, report = run_drill(cli, filled, "--all")
    checks = [m["check"] for m in report["body"]["mismatches"]]
    assert code == 3 and checks == ["store_record_damaged", "restore_failed"]
    assert report["body"]["mismatches"][1]["code"] == "invalid_record"

    # a record altered together with its hash column still differs from the archive
    with store.open_store(filled.vault_path / store.FILE_NAME) as conn:
        (text,) = conn.execute("SELECT record FROM conversations "
                               "WHERE conversation_id = 'c3'").fetchone()
        conn.execute("UPDATE conversations SET content_sha256 = ? WHERE conversation_id = 'c3'",
                     (hashlib.sha256(text.encode()).hexdigest(),))
    code, report = run_drill(cli, filled, "--all")
    checks = [m["check"] for m in report["body"]["mismatches"]]
    assert code == 3 and checks == ["store_differs_from_archive"]


def test_lost_conversation_is_a_mismatch_but_erased_and_purged_are_expected(
        filled: Pair, cli: Any) -> None:
    path = filled.vault_path
    with store.open_store(path / store.FILE_NAME) as conn:
        key = tombstones.load_key(path, conn)
        rows = dict(conn.execute("SELECT conversation_id, id FROM conversations"))
        with store.transaction(conn):
            tombstones.add(conn, key, "email", "erase.me@example.org")
            store.delete_conversation(conn, rows["c2"])
    statehook.changed(path, "erasure")
    code, report = run_drill(cli, filled, "--all")
    assert code == 0 and report["body"]["counts"]["erased"] == 1

    with store.open_store(path / store.FILE_NAME) as conn:
        with store.transaction(conn):
            store.delete_conversation(conn, rows["a2"])  # nobody asked for this
    code, report = run_drill(cli, filled, "--all")
    assert code == 3
    assert [m["check"] for m in report["body"]["mismatches"]] == ["missing_from_store"]
    assert report["body"]["mismatches"][0]["source"] == "app"

    # with a retention of a year, the 2024 conversation is past its time: a purge, expected
    cfg = filled.vault.config
    cfg.write_text(cfg.read_text() + '\n[sources."app"]\nretention_days = 365\n')
    code, report = run_drill(cli, filled, "--all")
    assert code == 0 and report["body"]["counts"]["purged"] == 1


def test_report_names_no_conversation_content(filled: Pair, cli: Any) -> None:
    with store.open_store(filled.vault_path / store.FILE_NAME) as conn:
        conn.execute("DELETE FROM messages WHERE conversation = (SELECT id FROM "
                     "conversations WHERE conversation_id = 'c3')")
        conn.execute("UPDATE conversations SET content_sha256 = 'y' "
                     "WHERE conversation_id = 'c3'")
    run_drill(cli, filled, "--all")
    text = next((filled.vault_path / "reports").iterdir()).read_text()
    for secret in ("c3@example.org", "third", "Mara", "\"c3\""):
        assert secret not in text


# -- status: drill age ---------------------------------------------------------------------------

def _forge_old_report(pair: Pair, days_ago: int, passed: bool = True) -> None:
    at = timestamps.format_utc(datetime.now(timestamps.UTC) - timedelta(days=days_ago))
    body = {"kind": drillreports.KIND, "drill_id": "0" * 32, "at": at, "passed": passed,
            "bundles": [], "counts": {}, "mismatch_count": 0 if passed else 1,
            "recovery_seconds": 1.5, "total_seconds": 2.0, "mode": "all"}
    doc = signed.sign(body, pair.vault.identity())
    (pair.vault_path / "reports" / f"drill-old{days_ago}.json").write_bytes(signed.dumps(doc))


def _drill_finding(pair: Pair) -> dict[str, Any] | None:
    rep = vaultstatus.report(pair.vault_path)
    found = [f for f in rep["findings"] if f["check"] == "drill"]
    return found[0] if found else None


def test_status_warns_without_a_recent_passed_drill(filled: Pair, cli: Any) -> None:
    f = _drill_finding(filled)
    assert f is not None and f["level"] == "WARNING" and "none has ever passed" in f["message"]

    _forge_old_report(filled, 120)
    f = _drill_finding(filled)
    assert f is not None and f["level"] == "WARNING" and "90 days" in f["message"]

    _forge_old_report(filled, 10)
    assert _drill_finding(filled) is None  # OK findings are not listed

    cfg = filled.vault.config
    cfg.write_text(cfg.read_text().replace("drill_interval_days = 90", "drill_interval_days = 5"))
    f = _drill_finding(filled)
    assert f is not None and "5 days" in f["message"]
    res = cli("vault", "status", "--home", filled.vault_path, "--json")
    assert res.code == 1


def test_status_interval_zero_and_bad_values(filled: Pair, cli: Any) -> None:
    cfg = filled.vault.config
    text = cfg.read_text()
    assert "drill_interval_days = 90" in text
    cfg.write_text(text.replace("drill_interval_days = 90", "drill_interval_days = 0"))
    assert _drill_finding(filled) is None
    cfg.write_text(text.replace("drill_interval_days = 90", "drill_interval_days = \"often\""))
    res = cli("vault", "status", "--home", filled.vault_path)
    assert res.code == 3 and "drill_interval_days" in res.err  # UNKNOWN, not CRITICAL


def test_forged_report_is_listed_invalid_and_ignored(filled: Pair, cli: Any) -> None:
    assert run_drill(cli, filled, "--all")[0] == 0
    kept = next((filled.vault_path / "reports").iterdir())
    doc = json.loads(kept.read_text())
    doc["body"]["passed"], doc["body"]["at"] = True, "2099-01-01T00:00:00Z"
    kept.write_text(json.dumps(doc))
    listed = cli("drill", "list", "--home", filled.vault_path, "--json").json()["drills"]
    assert [(d["valid"], d["error"]) for d in listed] == [(False, "bad_document")]
    f = _drill_finding(filled)
    assert f is not None and f["level"] == "WARNING"


def test_drill_without_archive_is_a_usage_error(pair: Pair, cli: Any) -> None:
    res = cli("drill", "--home", pair.vault_path)
    assert res.code == 2 and "no archived bundles" in res.err
    res = cli("drill", "list", "--home", pair.vault_path)
    assert res.code == 0 and "no drill" in res.err


def test_restricted_subject_is_expected_absent_and_redacted(filled: Pair, cli: Any) -> None:
    from vault import restriction
    from vault.subjects import Subject, open_vault

    with open_vault(filled.vault_path) as v:
        restriction.add(v, Subject.parse(emails=["c3@example.org"]), "contested")
    code, report = run_drill(cli, filled, "--all")
    assert code == 0, report["body"]["mismatches"]
    assert report["body"]["counts"]["restricted"] == 1
    assert report["body"]["counts"]["restored"] == 4
