"""Quarantine reports that must end: cured, stray, resealed or resolved by hand.

The cases, each driven through the real vault ingest where a vault is involved:

* quarantined, local copy still here: the next ``export run`` with the stick
  replaces the damaged copy; the vault ingests it; the report clears;
* quarantined after every vault acknowledged it (a damaged stray copy from
  another stick): not an open problem; the damaged copy leaves the stick and
  the vault's acknowledgement is kept;
* quarantined, local copy gone, never acknowledged: CRITICAL, naming
  ``export reseal SOURCE``, which seals its conversations again;
* anything else a person has dealt with: ``export resolve FILE``, recorded.
"""

from __future__ import annotations

from pathlib import Path

from export_kit import (bundle_files, check_consistent, give_receipt, make_site, open_bundle,
                        sha256)
from vault import exportschema, ingest, receipts, signed

NAME = "web-00000001.cvb"


def _status(cli, site) -> tuple[int, dict]:
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    return res.code, res.json()


def _run(cli, site, stick: Path | None = None, command: str = "run") -> tuple[int, dict]:
    res = cli("export", command, "--home", site.exporter.path, "--media", stick or site.stick,
              "--json")
    return res.code, res.json()


def _levels(status: dict) -> list[str]:
    return [a["level"] for a in status["alerts"]]


def _damage(path: Path) -> str:
    """Flip one byte in the middle of a bundle, as a failing stick would; its new hash."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    return sha256(path)


def _stray_stick(tmp_path: Path, good: bytes) -> tuple[Path, Path]:
    """A second stick carrying a damaged leftover copy of the first bundle."""
    stick = tmp_path / "old-stick"
    copy = stick / "chatvault" / "outbox" / NAME
    copy.parent.mkdir(parents=True)
    copy.write_bytes(good)
    _damage(copy)
    return stick, copy


def _acknowledged_everywhere(cli, tmp_path: Path, vaults: int = 1) -> tuple[object, bytes]:
    site = make_site(tmp_path, vaults=vaults)
    assert cli("export", "run", *site.args()).code == 0
    good = (site.stick_outbox / NAME).read_bytes()
    for vault in site.vaults:
        [out] = ingest.ingest_media(vault.path, site.stick)
        assert out.status == "ingested"
    code, report = _run(cli, site)
    assert code == 0 and report["receipts"]["completed"] == [NAME]
    assert bundle_files(site.outbox) == []
    return site, good


def test_stray_damaged_copy_after_acknowledgement_is_not_an_open_problem(tmp_path: Path,
                                                                        cli) -> None:
    site, good = _acknowledged_everywhere(cli, tmp_path)
    stick, copy = _stray_stick(tmp_path, good)
    damaged = sha256(copy)
    [out] = ingest.ingest_media(site.vaults[0].path, stick)
    assert out.status == "quarantined"

    code, report = _run(cli, site, stick)

    assert code == 0, report
    [o] = report["receipts"]["receipts"]
    assert o["result"] == "stray" and o["bundle"] == NAME
    assert "already holds" in o["reason"] and damaged[:16] in o["reason"]
    assert report["receipts"]["damaged_removed"] == [NAME]
    assert not copy.exists()  # the damaged copy left the stick, and its receipt too
    assert list((stick / "chatvault" / "receipts").iterdir()) == []
    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    assert status["quarantined"] == []
    [stray] = status["strays"]
    assert stray["file"] == NAME and stray["copy_sha256"] == damaged
    assert stray["removed_from_media_at"] is not None
    # reported once: the next run with that stick has nothing more to say
    code, again = _run(cli, site, stick)
    assert code == 0 and again["receipts"]["receipts"] == []
    check_consistent(site, settled=True)


def test_stray_copy_already_gone_from_the_stick_warns_until_resolved(tmp_path: Path,
                                                                     cli) -> None:
    site, good = _acknowledged_everywhere(cli, tmp_path)
    stick, copy = _stray_stick(tmp_path, good)
    ingest.ingest_media(site.vaults[0].path, stick)
    copy.unlink()  # someone deleted it before the stick came back

    code, report = _run(cli, site, stick, command="receipts")

    assert code == 0 and report["receipts"]["receipts"][0]["result"] == "stray"
    code, status = _status(cli, site)
    assert code == 1 and _levels(status) == ["WARNING"]
    assert "stray copy of web-00000001.cvb" in status["alerts"][0]["message"]
    assert "chatvault export resolve web-00000001.cvb" in status["alerts"][0]["message"]

    res = cli("export", "resolve", NAME, "--home", site.exporter.path,
              "--note", "old stick wiped", "--json")

    assert res.code == 0, res.err
    [done] = res.json()["resolved"]
    assert done["kind"] == "stray" and done["resolved"]["note"] == "old stick wiped"
    code, status = _status(cli, site)
    assert code == 0 and status["alerts"] == []
    assert status["strays"][0]["resolved"]["note"] == "old stick wiped"


def test_stray_copy_does_not_undo_one_vaults_acknowledgement(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, vaults=2)
    a, b = site.vaults
    assert cli("export", "run", *site.args()).code == 0
    good = (site.stick_outbox / NAME).read_bytes()
    ingest.ingest_media(a.path, site.stick)
    assert _run(cli, site)[0] == 0  # a acknowledged; b has not seen it yet
    stick, copy = _stray_stick(tmp_path, good)
    ingest.ingest_media(a.path, stick)

    code, report = _run(cli, site, stick, command="receipts")

    assert code == 0 and report["receipts"]["receipts"][0]["result"] == "stray"
    assert not copy.exists()
    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    [waiting] = status["unacknowledged"]
    assert waiting["acknowledged_by"] == [a.public().fingerprint]
    assert waiting["waiting_for"] == [b.public().fingerprint]
    ingest.ingest_media(b.path, site.stick)
    code, report = _run(cli, site)
    assert code == 0 and report["receipts"]["completed"] == [NAME]


def test_a_damaged_copy_removed_by_export_receipts_is_on_no_stick(tmp_path: Path,
                                                                    cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    _damage(site.stick_outbox / NAME)
    [out] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert out.status == "quarantined"

    code, report = _run(cli, site, command="receipts")

    assert report["receipts"]["damaged_removed"] == [NAME]
    _, status = _status(cli, site)
    [waiting] = status["unacknowledged"]
    assert waiting["on_media"] is False, "the status said 'on media' for the removed copy"
    code, report = _run(cli, site)
    assert [w["file"] for w in report["media"]["written"]] == [NAME]
    assert _status(cli, site)[1]["unacknowledged"][0]["on_media"] is True


def test_quarantined_damaged_copy_is_replaced_by_the_next_run(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    sealed = sha256(site.outbox / NAME)
    damaged = _damage(site.stick_outbox / NAME)
    [out] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert out.status == "quarantined"

    code, report = _run(cli, site)

    assert code == 3  # a vault refused a copy: reported as before
    assert report["receipts"]["receipts"][0]["result"] == "quarantined"
    assert report["receipts"]["damaged_removed"] == [NAME]
    assert [w["file"] for w in report["media"]["written"]] == [NAME]
    assert sha256(site.stick_outbox / NAME) == sealed != damaged
    code, status = _status(cli, site)
    assert code == 2
    [alert] = [a["message"] for a in status["alerts"] if a["level"] == "CRITICAL"]
    assert "quarantined web-00000001.cvb" in alert and "good copy" in alert

    [out] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert out.status == "ingested"
    code, report = _run(cli, site)
    assert code == 0 and report["receipts"]["completed"] == [NAME]
    assert _status(cli, site)[0] == 0
    check_consistent(site, settled=True)


def test_quarantined_with_the_local_copy_lost_is_resealed(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    _, sealed_records = open_bundle(site.vaults[0], site.outbox / NAME)
    _damage(site.stick_outbox / NAME)
    ingest.ingest_media(site.vaults[0].path, site.stick)
    (site.outbox / NAME).unlink()  # the exporter's disk lost it
    assert _run(cli, site, command="receipts")[0] == 3

    code, status = _status(cli, site)
    assert code == 2
    messages = " | ".join(a["message"] for a in status["alerts"])
    assert "chatvault export reseal web" in messages
    code, report = _run(cli, site, command="rewrite")
    assert report["media"]["written"] == []  # nothing left to rewrite it from

    res = cli("export", "reseal", "web", "--home", site.exporter.path, "--json")

    assert res.code == 0, res.err
    out = res.json()
    assert out["abandoned"] == [NAME] and out["conversations_to_seal_again"] == 3
    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    assert [b["file"] for b in status["abandoned"]] == [NAME]
    assert status["resolved"][0]["resolved"]["how"] == "resealed"

    code, report = _run(cli, site)
    assert code == 0
    [bundle] = report["sources"][0]["bundles"]
    assert bundle["file"] == "web-00000002.cvb" and bundle["conversations"] == 3
    assert bundle_files(site.stick_outbox) == ["web-00000002.cvb"]  # damaged #1 removed
    meta, records = open_bundle(site.vaults[0], site.stick_outbox / "web-00000002.cvb")
    assert meta["prev_hash"] is not None  # the chain goes on; the vault sees a gap at #1
    assert sorted(r["conversation_id"] for r in records) == sorted(
        r["conversation_id"] for r in sealed_records)
    [out] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert out.status == "ingested"
    code, report = _run(cli, site)
    assert code == 0 and report["receipts"]["completed"] == ["web-00000002.cvb"]
    assert _status(cli, site)[0] == 0


def test_reseal_refuses_when_nothing_is_lost(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0

    res = cli("export", "reseal", "web", "--home", site.exporter.path)
    assert res.code == 2 and "export rewrite" in res.err
    res = cli("export", "reseal", "crm", "--home", site.exporter.path)
    assert res.code == 2 and "not a [[sources]] name" in res.err


def _quarantine_receipt(site, at: str, reason: str) -> None:
    vault = site.vaults[0]
    path = site.stick_outbox / NAME
    meta, _ = open_bundle(vault, path)
    body = receipts.make(vault.identity(), bundle_file=NAME, bundle_sha256=sha256(path),
                         status="quarantined", reason=reason, meta=meta)["body"]
    receipts.write(site.stick, signed.sign({**body, "at": at}, vault.identity()))


def test_resolve_by_hand_clears_one_report_and_is_recorded(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    _quarantine_receipt(site, "2030-01-01T10:00:00Z", "untrusted_signer: exporter key unknown")
    assert _run(cli, site, command="receipts")[0] == 3
    code, status = _status(cli, site)
    assert code == 2
    assert "chatvault export resolve web-00000001.cvb" in status["alerts"][0]["message"]

    res = cli("export", "resolve", site.stick_outbox / NAME, "--home", site.exporter.path,
              "--note", "key trusted at the vault")
    assert res.code == 0 and "resolved" in res.err

    code, status = _status(cli, site)
    assert code == 0 and status["quarantined"] == []
    [done] = status["resolved"]
    assert done["resolved"]["note"] == "key trusted at the vault"
    assert done["resolved"]["how"] == "by hand" and done["resolved"]["at"]
    assert bundle_files(site.outbox) == [NAME]  # still waiting for the vault: kept
    again = cli("export", "resolve", NAME, "--home", site.exporter.path, "--note", "again")
    assert again.code == 2 and "no open quarantine report" in again.err

    # a new report from that vault is a new problem
    _quarantine_receipt(site, "2030-01-02T10:00:00Z", "untrusted_signer: still unknown")
    assert _run(cli, site, command="receipts")[0] == 3
    code, status = _status(cli, site)
    assert code == 2 and len(status["quarantined"]) == 1


def test_resolve_without_a_note_settles_nothing(tmp_path: Path, cli) -> None:
    """A CRITICAL report went away with nothing kept of why; --note is required."""
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    _quarantine_receipt(site, "2030-01-01T10:00:00Z", "untrusted_signer: exporter key unknown")
    assert _run(cli, site, command="receipts")[0] == 3
    for extra in ([], ["--note", "  "]):
        res = cli("export", "resolve", NAME, "--home", site.exporter.path, *extra)
        assert res.code == 2 and "--note" in res.err
    code, status = _status(cli, site)
    assert code == 2 and len(status["quarantined"]) == 1


def test_resolve_an_unknown_bundle(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    res = cli("export", "resolve", "web-00000042.cvb", "--home", site.exporter.path,
              "--note", "x", "--json")
    assert res.code == 2 and res.json()["error"] == "usage"
    assert "never sealed" in res.err


def test_quarantine_of_our_own_bytes_is_not_removed_from_the_stick(tmp_path: Path,
                                                                  cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    give_receipt(site, site.vaults[0], NAME, status="quarantined", reason="fork: test")

    code, report = _run(cli, site)

    assert code == 3 and report["receipts"]["damaged_removed"] == []
    assert bundle_files(site.stick_outbox) == [NAME]
    assert report["media"]["written"] == []


def test_a_state_from_before_quarantine_tracking_is_migrated(tmp_path: Path, cli) -> None:
    """A state written by the previous release (schema step 1) opens and keeps its data."""
    import sqlite3

    from vault import exportstate

    site = make_site(tmp_path)
    folder = site.exporter.path / "state"
    folder.mkdir(exist_ok=True)
    db = sqlite3.connect(folder / exportstate.FILE_NAME)
    db.executescript(exportschema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO bundles VALUES ('old', 1, 'old-00000001.cvb', ?, 10, 10, 1, 1, "
               "'[]', '2024-01-01T00:00:00Z', NULL, '2024-01-02T00:00:00Z', NULL)", ("ab" * 32,))
    db.execute("INSERT INTO acks VALUES (?, 'V', 'quarantined', 'damaged', "
               "'2024-01-03T00:00:00Z', '2024-01-03T00:00:00Z')", ("ab" * 32,))
    db.commit()
    db.close()

    with site.state() as state:
        [row] = state.bundles()
        assert row.acknowledged_at and row.abandoned_at is None
        [ack] = state.acks()
        assert ack.status == "quarantined" and ack.copy_sha256 is None
        assert state.db.execute("PRAGMA user_version").fetchone()[0] == len(
            exportschema.MIGRATIONS)
    # a quarantine report on a bundle every vault acknowledged is not an open problem
    code, status = _status(cli, site)
    assert status["quarantined"] == [] and status["resolved"][0]["file"] == "old-00000001.cvb"
