"""Receipts: valid, forged, untrusted, unknown, quarantined; and letting go of safe bundles."""

from __future__ import annotations

import json
from pathlib import Path

from export_kit import (bundle_files, check_consistent, conv, give_receipt, make_site,
                        sha256, write_jsonl)
from vault import home, receipts, signed


def _receipts(cli, site) -> tuple[int, dict]:
    res = cli("export", "receipts", *site.args(), "--json")
    return res.code, res.json()


def _only(out: dict) -> dict:
    assert len(out["receipts"]["receipts"]) == 1, out
    return out["receipts"]["receipts"][0]


def _status(cli, site) -> tuple[int, dict]:
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    return res.code, res.json()


def _receipt_dir(site) -> Path:
    return site.stick / "chatvault" / "receipts"


def _sealed(cli, tmp_path: Path, **kw) -> object:
    site = make_site(tmp_path, **kw)
    assert cli("export", "run", *site.args()).code == 0
    return site


def test_valid_receipt_acknowledges_and_lets_go(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    give_receipt(site, site.vaults[0], "web-00000001.cvb")

    code, out = _receipts(cli, site)

    assert code == 0
    o = _only(out)
    assert o["result"] == "acknowledged" and o["bundle"] == "web-00000001.cvb"
    assert o["vault"] == site.vaults[0].public().fingerprint
    assert out["receipts"]["completed"] == ["web-00000001.cvb"]
    assert bundle_files(site.outbox) == [] and bundle_files(site.stick_outbox) == []
    assert list(_receipt_dir(site).iterdir()) == []
    code, status = _status(cli, site)
    assert code == 0 and status["unacknowledged"] == []
    # the next run neither reseals nor rewrites what is safe
    again = cli("export", "run", *site.args(), "--json").json()
    assert again["totals"]["bundles"] == 0 and again["media"]["written"] == []
    check_consistent(site, settled=True)


def test_both_recipient_vaults_must_acknowledge(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path, vaults=2)
    a, b = site.vaults
    give_receipt(site, a, "web-00000001.cvb")

    code, out = _receipts(cli, site)

    assert code == 0 and _only(out)["result"] == "acknowledged"
    assert out["receipts"]["completed"] == []
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb"]
    waiting = _status(cli, site)[1]["unacknowledged"][0]
    assert waiting["acknowledged_by"] == [a.public().fingerprint]
    assert waiting["waiting_for"] == [b.public().fingerprint]

    give_receipt(site, b, "web-00000001.cvb")
    code, out = _receipts(cli, site)
    assert code == 0 and out["receipts"]["completed"] == ["web-00000001.cvb"]
    assert bundle_files(site.outbox) == [] and bundle_files(site.stick_outbox) == []
    assert list(_receipt_dir(site).iterdir()) == []


def test_forged_receipt_is_refused_and_the_run_goes_on(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    path = give_receipt(site, site.vaults[0], "web-00000001.cvb", status="quarantined",
                        reason="damaged")
    doc = json.loads(path.read_text())
    doc["body"]["status"] = "ingested"  # the signature no longer covers this
    path.write_text(json.dumps(doc))
    write_jsonl(site.source, [conv("new", ["more data"])])

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 3
    out = res.json()
    o = out["receipts"]["receipts"][0]
    assert o["result"] == "refused" and o["error"] == "bad_document"
    assert "forged or altered" in o["reason"]
    assert "forged or altered" in res.err
    assert out["totals"]["bundles"] == 1  # sealing went on regardless
    assert bundle_files(site.outbox) == ["web-00000001.cvb", "web-00000002.cvb"]
    with site.state() as state:
        assert state.acks() == []
    # the timer runs 'export run --quiet': monitoring must hear of it
    status = cli("export", "status", "--home", site.exporter.path, "--json")
    assert status.code == 1
    [alert] = [a["message"] for a in status.json()["alerts"] if "refused" in a["message"]]
    assert "refused 1 receipt(s)" in alert and path.name in alert and "forged" in alert


def test_receipt_from_an_untrusted_vault(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path, trust_vaults=False)
    give_receipt(site, site.vaults[0], "web-00000001.cvb")

    code, out = _receipts(cli, site)

    assert code == 4
    o = _only(out)
    assert o["result"] == "refused" and o["error"] == "untrusted_signer"
    assert "--role vault" in o["reason"]
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]


def test_receipt_from_a_trusted_vault_that_is_not_a_recipient(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    stranger = home.create("vault", tmp_path / "stranger", "stranger")
    t = site.exporter.trust()
    t.trust(stranger.public_key.read_text(), "vault")
    t.save()
    doc = receipts.make(stranger.identity(), bundle_file="web-00000001.cvb",
                        bundle_sha256=sha256(site.stick_outbox / "web-00000001.cvb"),
                        status="ingested")
    receipts.write(site.stick, doc)

    code, out = _receipts(cli, site)

    assert code == 4
    assert _only(out)["error"] == "not_a_recipient_vault"
    with site.state() as state:
        assert state.acks() == []


def test_receipt_for_a_bundle_never_written(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    doc = receipts.make(site.vaults[0].identity(), bundle_file="web-00000099.cvb",
                        bundle_sha256="ab" * 32, status="ingested")
    receipts.write(site.stick, doc)

    code, out = _receipts(cli, site)

    assert code == 3
    o = _only(out)
    assert o["result"] == "refused" and o["error"] == "unknown_bundle"
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]


def test_another_exporters_receipt_is_left_alone(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    doc = receipts.make(site.vaults[0].identity(), bundle_file="crm-00000001.cvb",
                        bundle_sha256="cd" * 32, status="ingested")
    path = receipts.write(site.stick, doc)

    code, out = _receipts(cli, site)

    assert code == 0 and _only(out)["result"] == "ignored"
    assert path.exists()


def test_damaged_receipt_file_never_crashes(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    folder = _receipt_dir(site)
    folder.mkdir(parents=True)
    (folder / "web-00000001.XXXXXXXXX.receipt.json").write_bytes(b"\x00{not json")
    (folder / "web-00000001.YYYYYYYYY.receipt.json").write_text(
        json.dumps({"body": {"kind": "receipt"}, "signatures": [{"key": 5}]}))

    code, out = _receipts(cli, site)

    assert code == 3
    assert [o["result"] for o in out["receipts"]["receipts"]] == ["refused", "refused"]


def test_quarantine_report_is_critical_until_the_vault_ingests(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    give_receipt(site, site.vaults[0], "web-00000001.cvb", status="quarantined",
                 reason="fork: sequence 1 already held with another hash")

    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 3
    assert res.json()["receipts"]["receipts"][0]["result"] == "quarantined"
    assert "quarantined" in res.err

    code, status = _status(cli, site)
    assert code == 2 and status["status"] == "CRITICAL"
    assert any("quarantined web-00000001.cvb: fork" in a["message"] for a in status["alerts"])
    assert status["quarantined"][0]["reason"].startswith("fork")
    text = cli("export", "status", "--home", site.exporter.path)
    assert text.code == 2 and text.out.startswith("CHATVAULT EXPORT CRITICAL")
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]  # not acknowledged: kept

    # seen again on the next run: already recorded, not a new alarm
    assert cli("export", "run", *site.args()).code == 0

    give_receipt(site, site.vaults[0], "web-00000001.cvb")  # later: ingested after all
    assert _receipts(cli, site)[1]["receipts"]["completed"] == ["web-00000001.cvb"]
    code, status = _status(cli, site)
    assert code == 0 and status["quarantined"] == []


def test_receipts_written_by_the_real_vault_ingest(tmp_path: Path, cli) -> None:
    from vault import ingest

    site = make_site(tmp_path, vaults=2, max_bundle_bytes=64 * 1024,
                     convs=[conv(f"c{i}", ["x" * 30_000]) for i in range(5)])
    assert cli("export", "run", *site.args()).code == 0
    names = bundle_files(site.stick_outbox)
    assert len(names) >= 2

    for vault in site.vaults:
        outcomes = ingest.ingest_media(vault.path, site.stick)
        assert {o.status for o in outcomes} == {"ingested"}
    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.err
    out = res.json()
    assert out["receipts"]["completed"] == names
    assert bundle_files(site.stick_outbox) == [] and bundle_files(site.outbox) == []
    assert list(_receipt_dir(site).iterdir()) == []


def test_receipts_without_media(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    res = cli("export", "receipts", "--home", site.exporter.path, "--media",
              tmp_path / "absent")
    assert res.code == 5 and "is the stick mounted" in res.err


def test_signed_document_of_another_kind_is_not_a_receipt(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    body = {"kind": "request", "bundle_file": "web-00000001.cvb",
            "bundle_sha256": sha256(site.stick_outbox / "web-00000001.cvb"),
            "status": "ingested"}
    doc = signed.sign(body, site.vaults[0].identity())
    folder = _receipt_dir(site)
    folder.mkdir(parents=True)
    (folder / "web-00000001.ABCDEFGHI.receipt.json").write_bytes(signed.dumps(doc))

    code, out = _receipts(cli, site)

    assert code == 3 and _only(out)["error"] == "bad_document"
    with site.state() as state:
        assert state.acks() == []


def test_damaged_copy_quarantined_by_the_vault_then_rewritten(tmp_path: Path, cli) -> None:
    """End to end with the real vault: a stick that damaged the bundle, and the cure."""
    from vault import ingest

    site = _sealed(cli, tmp_path)
    on_stick = site.stick_outbox / "web-00000001.cvb"
    data = bytearray(on_stick.read_bytes())
    data[len(data) // 2] ^= 0x20
    on_stick.write_bytes(bytes(data))
    [outcome] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert outcome.status == "quarantined"

    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 3
    [o] = res.json()["receipts"]["receipts"]
    assert o["result"] == "quarantined" and o["bundle"] == "web-00000001.cvb"
    assert "the copy the vault read is damaged" in o["reason"]
    code, status = _status(cli, site)
    assert code == 2 and "damaged" in status["quarantined"][0]["reason"]
    assert any("replaces the damaged copy by a good copy" in a["message"]
               for a in status["alerts"])

    assert cli("export", "rewrite", *site.args()).code == 0
    [outcome] = ingest.ingest_media(site.vaults[0].path, site.stick)
    assert outcome.status == "ingested"
    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 0 and res.json()["receipts"]["completed"] == ["web-00000001.cvb"]
    assert _status(cli, site)[0] == 0


def test_recipient_removed_from_config_no_longer_holds_bundles_back(tmp_path: Path,
                                                                    cli) -> None:
    site = _sealed(cli, tmp_path, vaults=2)
    cfg = site.exporter.config
    retired = f'\n[[recipients]]\npublic_key = "{site.vaults[1].public_key}"\n'
    assert retired in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(retired, "\n"))
    give_receipt(site, site.vaults[0], "web-00000001.cvb")

    code, out = _receipts(cli, site)

    assert code == 0 and out["receipts"]["completed"] == ["web-00000001.cvb"]
    assert bundle_files(site.outbox) == []


def test_receipts_json_names_the_media_it_read(tmp_path: Path, cli) -> None:
    site = _sealed(cli, tmp_path)
    give_receipt(site, site.vaults[0], "web-00000001.cvb")

    code, out = _receipts(cli, site)

    assert code == 0
    assert out["media_path"] == str(site.stick)
    assert out["media"]["path"] == str(site.stick)
    assert out["media"]["written"] == []  # 'receipts' only reads and tidies
    assert out["receipts"]["removed_from_media"] == ["web-00000001.cvb",
                                                     "web-00000001.{}.receipt.json".format(
                                                         site.vaults[0].public().fingerprint
                                                         .replace("-", "")[:9])]
