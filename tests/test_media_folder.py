"""What a media folder listing takes, and what it reports and leaves alone."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from vault import media


def test_odd_entries_are_reported_by_name_and_never_taken(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "web-00000001.cvb").write_bytes(b"x" * 10)
    (tmp_path / "elsewhere.cvb").write_bytes(b"y")
    (folder / "web-00000002.cvb").symlink_to(tmp_path / "elsewhere.cvb")
    (folder / "web-00000003.cvb").mkdir()
    os.mkfifo(folder / "web-00000004.cvb")
    (folder / "wéb-00000005.cvb").write_bytes(b"z")
    (folder / "big-00000006.cvb").write_bytes(b"z" * 100)
    (folder / "notes.txt").write_text("not ours")

    with caplog.at_level(logging.WARNING, logger="vault.media"):
        found = media.safe_files(folder, ".cvb", 50)

    assert [p.name for p in found] == ["web-00000001.cvb"]
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "web-00000002.cvb: a symbolic link, not a regular file" in said
    assert "web-00000003.cvb: a directory" in said
    assert "web-00000004.cvb: a FIFO" in said
    assert "'wéb-00000005.cvb'" in said and "a name chatvault never writes" in said
    assert "big-00000006" not in said and "notes.txt" not in said  # reported by callers
    assert (tmp_path / "elsewhere.cvb").read_bytes() == b"y"


def test_vault_ingest_names_odd_entries_and_exits_3(tmp_path: Path) -> None:
    """A link or a FIFO where bundles go is someone else's doing: said, exit 3, never read."""
    from conftest import make_pair, run_cli
    from vault_kit import Chain, conv, outbox, stick

    pair = make_pair(tmp_path)
    root = stick(tmp_path / "stick")
    Chain(pair, outbox(root)).seal([conv("c1", ["hello"])])
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the vault")
    (outbox(root) / "web-00000009.cvb").symlink_to(secret)
    os.mkfifo(outbox(root) / "web-00000010.cvb")
    requests = root / "chatvault" / "requests"
    requests.mkdir()
    (requests / "r1.request.json").symlink_to(secret)

    r = run_cli("vault", "ingest", root, "--json", "--home", pair.vault_path)
    assert r.code == 3, r.err
    out = r.json()
    assert [o["status"] for o in out["outcomes"]] == ["ingested"]  # type: ignore[index]
    ignored = "\n".join(out["ignored"])  # type: ignore[index]
    assert "web-00000009.cvb: a symbolic link" in ignored
    assert "web-00000010.cvb: a FIFO" in ignored
    assert "r1.request.json: a symbolic link" in ignored
    assert secret.read_bytes() == b"not for the vault"
    text = run_cli("vault", "ingest", root, "--home", pair.vault_path)
    assert text.code == 3 and "3 odd entries ignored" in text.err


def test_receipts_belong_to_whoever_owns_the_chatvault_folder(tmp_path: Path) -> None:
    """On ext4 the exporter, running as its own user, must be able to read them."""
    from conftest import make_pair
    from vault import ingest, receipts
    from vault_kit import Chain, conv, outbox, stick

    if os.geteuid() != 0:
        pytest.skip("needs root to write as root and hand over")
    pair = make_pair(tmp_path)
    root = stick(tmp_path / "stick")
    Chain(pair, outbox(root)).seal([conv("c1", ["hello"])])
    for path in [root / "chatvault", *(root / "chatvault").rglob("*")]:
        os.chown(path, 1000, 1000)
    ingest.ingest_media(pair.vault_path, root)
    [receipt] = receipts.on_media(root)
    for path in (receipt, receipt.parent):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (1000, 1000), path
    assert stat.S_IMODE(os.stat(receipt).st_mode) == 0o600
