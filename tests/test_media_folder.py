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


def test_every_name_chatvault_never_writes_on_a_stick_is_named_and_exits_3(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not only odd ``*.cvb``: upper case, a newline, any other name; quoted, never read."""
    from conftest import make_pair, run_cli
    from vault_kit import Chain, conv, outbox, stick

    pair = make_pair(tmp_path)
    root = stick(tmp_path / "stick")
    bundle = Chain(pair, outbox(root)).seal([conv("c1", ["hello"])]).path
    box = outbox(root)
    (box / "WEB-00000001.CVB").write_bytes(bundle.read_bytes())
    (box / "web-00000012.cvb\nevil").write_bytes(bundle.read_bytes())
    (box / "notes.txt").write_text("not ours")
    os.mkfifo(box / "fifo")
    (box / ".web-00000001.cvb.tmp-abc123").write_bytes(b"an interrupted write: ours")
    os.mkfifo(box / ".web-00000002.cvb.tmp-abc123")
    requests = root / "chatvault" / "requests"
    requests.mkdir()
    (requests / "R1.REQUEST.JSON").write_text("{}")
    (requests / "r2.request.json\n").write_text("{}")

    r = run_cli("vault", "ingest", root, "--json", "--home", pair.vault_path)
    assert r.code == 3, r.err
    out = r.json()
    assert [o["status"] for o in out["outcomes"]] == ["ingested"]  # type: ignore[index]
    ignored = out["ignored"]  # type: ignore[index]
    assert not any("\n" in line for line in ignored), ignored
    said = "\n".join(ignored)
    for name in ("WEB-00000001.CVB", "web-00000012.cvb\nevil", "notes.txt", "fifo",
                 ".web-00000002.cvb.tmp-abc123", "R1.REQUEST.JSON", "r2.request.json\n"):
        assert repr(name) in said or f"/{name}: " in said, (name, said)
    assert ".web-00000001.cvb.tmp-abc123" not in said, "chatvault's own temporary"
    assert len(ignored) == 7
    # what the daemon runs too (staging, answering requests) logs each, on one line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vault.media"):
        text = run_cli("vault", "ingest", root, "--home", pair.vault_path)
    assert text.code == 3 and "7 odd entries ignored" in text.err
    logged = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": ignored")]
    assert len(logged) == 7 and not any("\n" in line for line in logged), logged
    assert any("'web-00000012.cvb\\nevil'" in line for line in logged), logged


def test_a_plain_folder_named_outbox_is_judged_by_suffix_only(tmp_path: Path) -> None:
    """Only a stick's own folders (``chatvault/outbox``) hold nothing but chatvault's."""
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "notes.txt").write_text("fine here")
    (folder / "WEB-1.CVB").write_text("fine here")
    assert media.odd_entries(folder, ".cvb") == []
    stick_box = tmp_path / "stick" / media.ROOT / media.OUTBOX
    stick_box.mkdir(parents=True)
    (stick_box / "notes.txt").write_text("not ours")
    assert [p.name for p, _ in media.odd_entries(stick_box, ".cvb")] == ["notes.txt"]


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


def test_what_desktops_leave_on_a_stick_is_passed_over_quietly(tmp_path: Path) -> None:
    """A Mac writes a ._ twin of every file on FAT and exFAT: no exit 3 for a clean stick."""
    from conftest import make_pair, run_cli
    from vault_kit import Chain, conv, outbox, stick

    pair = make_pair(tmp_path)
    root = stick(tmp_path / "stick")
    bundle = Chain(pair, outbox(root)).seal([conv("c1", ["hello"])]).path
    box = outbox(root)
    (box / f"._{bundle.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (box / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (box / "Thumbs.db").write_bytes(b"thumbs")

    r = run_cli("vault", "ingest", root, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    out = r.json()
    assert [o["status"] for o in out["outcomes"]] == ["ingested"]  # type: ignore[index]
    assert out["ignored"] == []  # type: ignore[index]
    (box / "._notes").mkdir()  # the name is litter whatever it is: never read
    assert media.odd_entries(box, ".cvb") == []
