"""A lost or rolled-back exporter state is refused, never silently started over.

Starting over would seal ``web #1`` again with other content: the vault
refuses it as a fork, and the exporter would go on writing bundles nobody
can ingest. Every export command therefore checks, before it changes
anything, that its state still knows what this home has sealed: the chain
register ``H/chains.json``, the local outbox and the bundles on the stick
signed by this exporter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from export_kit import bundle_files, conv, make_site, sha256, write_jsonl

DB = ("export.db", "export.db-wal", "export.db-shm")


def _lose_state(site) -> None:
    for name in DB:
        (site.exporter.path / "state" / name).unlink(missing_ok=True)


def _two_bundles(cli, tmp_path: Path):
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    write_jsonl(site.source, [conv("new", ["more"])])
    assert cli("export", "run", *site.args()).code == 0
    assert bundle_files(site.outbox) == ["web-00000001.cvb", "web-00000002.cvb"]
    return site


def _snapshot(site) -> dict[str, str]:
    files = [*site.outbox.glob("*.cvb"), *site.stick_outbox.glob("*.cvb")]
    return {str(p): sha256(p) for p in files}


def test_lost_state_is_refused_by_every_export_command(tmp_path: Path, cli) -> None:
    site = _two_bundles(cli, tmp_path)
    before = _snapshot(site)
    register = json.loads((site.exporter.path / "chains.json").read_text())
    assert register["sources"]["web"]["sequence"] == 2
    _lose_state(site)

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 4
    err = res.json()
    assert err["error"] == "state_lost"
    assert "web up to #2" in err["message"] and "fork" in err["message"]
    assert "state/ from a backup" in err["message"]
    assert "If the exporter state is lost" in err["message"]  # the README section
    assert _snapshot(site) == before  # nothing deleted, nothing sealed
    assert not (site.exporter.path / "state" / "export.db").exists()
    for command in ("receipts", "rewrite"):
        res = cli("export", command, *site.args())
        assert res.code == 4 and "fork" in res.err
    res = cli("export", "reseal", "web", "--home", site.exporter.path)
    assert res.code == 4

    res = cli("export", "status", "--home", site.exporter.path, "--json")
    assert res.code == 2
    assert any(a["level"] == "CRITICAL" and "export.db is missing" in a["message"]
               for a in res.json()["alerts"])
    assert not (site.exporter.path / "state" / "export.db").exists()


def test_lost_state_and_register_still_refused_by_the_outbox(tmp_path: Path, cli) -> None:
    site = _two_bundles(cli, tmp_path)
    _lose_state(site)
    (site.exporter.path / "chains.json").unlink()

    res = cli("export", "run", "--home", site.exporter.path, "--media", tmp_path / "no-stick")

    assert res.code == 4 and "outbox/web-00000002.cvb" in res.err
    assert bundle_files(site.outbox) == ["web-00000001.cvb", "web-00000002.cvb"]


def test_lost_home_state_still_refused_by_the_stick(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    _lose_state(site)
    (site.exporter.path / "chains.json").unlink()
    shutil.rmtree(site.outbox)
    site.outbox.mkdir()

    res = cli("export", "run", *site.args())

    assert res.code == 4
    assert "web-00000001.cvb on the stick" in res.err and "signed by this exporter" in res.err
    assert bundle_files(site.outbox) == []


def test_state_restored_from_an_older_backup_is_refused(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    backup = tmp_path / "backup"
    shutil.copytree(site.exporter.path / "state", backup)
    write_jsonl(site.source, [conv("new", ["more"])])
    assert cli("export", "run", *site.args()).code == 0
    _lose_state(site)
    for name in DB:
        if (backup / name).exists():
            shutil.copy2(backup / name, site.exporter.path / "state" / name)

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 4 and res.json()["error"] == "state_rolled_back"
    assert "ends at web #1" in res.err and "#2" in res.err
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb", "web-00000002.cvb"]
    res = cli("export", "status", "--home", site.exporter.path)
    assert res.code == 2 and "rolled back" in res.out


def test_crash_before_the_first_bundle_was_recorded_is_not_a_lost_state(tmp_path: Path,
                                                                        cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "check-config", "--home", site.exporter.path).code == 0
    # what a run killed between sealing and recording its first bundle leaves
    site.outbox.mkdir(exist_ok=True)
    (site.outbox / "web-00000001.cvb").write_bytes(b"sealed, never recorded")

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.err
    assert any("never recorded: removed" in n for n in res.json()["recovered"])
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb"]


def test_the_documented_way_out_new_source_names(tmp_path: Path, cli) -> None:
    """README: no usable backup, so the sources start new chains under new names."""
    site = _two_bundles(cli, tmp_path)
    _lose_state(site)
    assert cli("export", "run", *site.args()).code == 4
    cfg = site.exporter.config
    cfg.write_text(cfg.read_text().replace('name = "web"', 'name = "web-2"'))

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.err
    out = res.json()
    assert [b["file"] for b in out["sources"][0]["bundles"]] == ["web-2-00000001.cvb"]
    # the old chain's bundles are nobody's to delete: kept, and said so
    assert bundle_files(site.outbox) == ["web-00000001.cvb", "web-00000002.cvb",
                                         "web-2-00000001.cvb"]
    assert any("web-00000002.cvb is not recorded" in n for n in out["recovered"])
    assert "web-00000001.cvb" in bundle_files(site.stick_outbox)
    # and going back to the old name is refused: it would fork
    cfg.write_text(cfg.read_text().replace('name = "web-2"', 'name = "web"'))
    assert cli("export", "run", *site.args()).code == 4
