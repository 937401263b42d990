"""The media folder of a stick that is not plugged in: an empty folder of the machine's disk.

With ``[media] mounted_only = true`` (the default) the exporter takes a media
folder on the file system of ``/`` or of its home, that is no mount point,
for "no stick mounted": it seals into the local outbox, writes nothing there
and exits 5, as for a missing folder. A real mount (tmpfs here) or a folder
on one is a stick.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export_kit import bundle_files, make_site, tmpfs
from vault import media

pytestmark = pytest.mark.media


def _mounted_only(site) -> None:
    config = site.exporter.config
    text = config.read_text()
    assert "mounted_only = false" in text
    config.write_text(text.replace("mounted_only = false", "mounted_only = true"))


def test_a_folder_of_the_own_disk_is_no_stick(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    _mounted_only(site)

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 5, res.err
    error = res.json()["media"]["error"]
    assert error["error"] == "media_missing"
    assert "not a mounted stick" in error["message"] and str(site.stick) in res.err
    assert list(site.stick.iterdir()) == []  # nothing written where no stick is
    assert len(bundle_files(site.outbox)) == 1  # sealed, waiting in the outbox
    with site.state() as state:
        assert [r.media_written_at for r in state.bundles()] == [None]

    status = cli("export", "status", "--home", site.exporter.path, "--json")
    assert [b["on_media"] for b in status.json()["unacknowledged"]] == [False]
    assert status.code == 1  # said now, not when the bundle is days old
    assert any("on no stick yet" in a["message"] for a in status.json()["alerts"])

    receipts = cli("export", "receipts", *site.args())
    assert receipts.code == 5 and "not a mounted stick" in receipts.err
    rewrite = cli("export", "rewrite", *site.args())
    assert rewrite.code == 5 and list(site.stick.iterdir()) == []


def test_check_config_says_the_media_folder_is_no_stick(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    _mounted_only(site)
    config = site.exporter.config
    config.write_text(config.read_text().replace('path = "/media/chatvault"',
                                                 f'path = "{site.stick}"'))

    res = cli("export", "check-config", "--home", site.exporter.path)

    assert res.code == 0, res.err
    assert "not a mounted stick" in res.out + res.err


def test_a_mounted_stick_and_a_folder_on_it_are_taken(tmp_path: Path, cli) -> None:
    with tmpfs(tmp_path / "stick", "8m") as stick:
        site = make_site(tmp_path, stick=stick)
        _mounted_only(site)
        assert media.not_a_stick(stick, site.exporter.path) is None
        sub = stick / "carried"
        sub.mkdir()
        assert media.not_a_stick(sub, site.exporter.path) is None

        failed = cli("export", "run", "--home", site.exporter.path, "--media", tmp_path / "x")
        assert failed.code == 5
        res = cli("export", "run", *site.args(), "--json")

        assert res.code == 0, res.err
        assert len(bundle_files(site.stick_outbox)) == 1
        status = cli("export", "status", "--home", site.exporter.path, "--json")
        assert not [a for a in status.json()["alerts"] if "no stick" in a["message"]]


def test_mounted_only_false_takes_a_plain_folder(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)  # the kit's configs say mounted_only = false

    res = cli("export", "run", *site.args())

    assert res.code == 0, res.err
    assert len(bundle_files(site.stick_outbox)) == 1


def test_mounted_only_must_be_true_or_false(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    config = site.exporter.config
    config.write_text(config.read_text().replace("mounted_only = false",
                                                 'mounted_only = "no"'))

    res = cli("export", "check-config", "--home", site.exporter.path)

    assert res.code == 2
    assert "media.mounted_only" in res.err and "true or false" in res.err


def test_a_run_with_no_stick_and_nothing_new_is_still_a_warning(tmp_path: Path, cli) -> None:
    """A timer that keeps missing an unplugged stick reads no receipts: monitoring hears it."""
    with tmpfs(tmp_path / "stick", "8m") as stick:
        site = make_site(tmp_path, stick=stick)
        _mounted_only(site)
        assert cli("export", "run", *site.args()).code == 0  # the bundle is on the stick
    res = cli("export", "run", *site.args())  # unmounted now: its own disk's empty folder

    assert res.code == 5
    status = cli("export", "status", "--home", site.exporter.path, "--json")
    assert status.code == 1
    [alert] = [a["message"] for a in status.json()["alerts"] if "stick" in a["message"]]
    assert "could not use the stick" in alert and "receipts were not read" in alert
