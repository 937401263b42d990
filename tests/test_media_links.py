"""A stick whose ``chatvault`` folder, or a folder in it, is a symbolic link is refused.

An ext4 stick can carry links. Followed, ``chatvault/outbox -> /anywhere``
made ``export run`` write bundles there, and ``chatvault/receipts ->
/anywhere`` made the vault (root) write its receipts into that folder of
the vault machine; a linked outbox was read as empty and ingest said 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export_kit import bundle_files, make_site
from vault import ingest, media
from vault.errors import MediaUnsafe


@pytest.mark.parametrize("linked", ["chatvault", "chatvault/outbox"])
def test_export_run_never_writes_through_a_link(tmp_path: Path, cli, linked: str) -> None:
    site = make_site(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = site.stick / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 5, res.err
    error = res.json()["media"]["error"]
    assert error["error"] == "media_unsafe" and error["path"].endswith(linked)
    assert "symbolic link" in error["message"]
    assert list(elsewhere.rglob("*")) == []
    assert len(bundle_files(site.outbox)) == 1  # kept for the next stick


def test_vault_writes_no_receipt_through_a_link(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (site.stick / "chatvault" / "receipts").symlink_to(elsewhere)

    res = cli("vault", "ingest", site.stick, "--home", site.vaults[0].path)

    assert res.code == 5, res.err
    assert "chatvault/receipts: is a symbolic link" in res.err
    assert list(elsewhere.iterdir()) == []


def test_a_linked_outbox_is_not_read_as_empty(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    moved = tmp_path / "moved"
    site.stick_outbox.rename(moved)
    site.stick_outbox.symlink_to(moved)

    with pytest.raises(MediaUnsafe):
        ingest.ingest_media(site.vaults[0].path, site.stick)
    res = cli("vault", "ingest", site.stick, "--home", site.vaults[0].path)
    assert res.code == 5 and "chatvault/outbox: is a symbolic link" in res.err


def test_a_file_in_place_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "chatvault").mkdir()
    (tmp_path / "chatvault" / "receipts").write_text("x")
    with pytest.raises(MediaUnsafe, match="is a file, not a folder"):
        media.folder(tmp_path, media.RECEIPTS, create=True)
    assert media.folder(tmp_path, media.OUTBOX, create=True).is_dir()


@pytest.mark.parametrize("command", ["run", "receipts", "rewrite"])
def test_odd_entries_on_the_stick_are_said_once(tmp_path: Path, proc, command: str) -> None:
    """Each listing of a folder logged its links and FIFOs: one line each was said twice."""
    site = make_site(tmp_path)
    (site.stick / "chatvault" / "receipts").mkdir(parents=True)
    site.stick_outbox.mkdir()
    (site.stick / "chatvault" / "receipts" / "x.receipt.json").symlink_to("/etc/passwd")
    (site.stick_outbox / "z.cvb").symlink_to("/etc/passwd")

    res = proc("export", command, *site.args())

    assert res.code in (0, 5), res.err
    if command != "rewrite":  # rewrite reads no receipts
        assert res.err.count("x.receipt.json: a symbolic link") == 1, res.err
    if command != "receipts":  # said by the commands writing to the outbox
        assert res.err.count("z.cvb: a symbolic link") == 1, res.err
