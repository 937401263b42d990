"""Staging and ingest from a real exFAT stick (loop device + FUSE), pulled mid-copy.

The "stick" is an exFAT image attached with ``losetup`` and mounted with
``mount.exfat-fuse``. Pulling it is simulated by killing the FUSE process
that serves the mount while a large bundle is being copied: reads then fail
as they do when a stick disappears. Needs root, ``exfatprogs`` and
``exfat-fuse``; skipped without them unless ``CHATVAULT_REQUIRE_MEDIA_TESTS=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Pair
from vault import ingest, receipts, staging
from vault.errors import MediaError
from vault_kit import Chain, conv, open_store, outbox

TOOLS = ("losetup", "mkfs.exfat", "mount.exfat-fuse", "umount")


def _need_media() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    problem = None
    if os.geteuid() != 0:
        problem = "needs root"
    elif missing:
        problem = f"needs {', '.join(missing)}"
    elif not Path("/dev/fuse").exists():
        problem = "needs /dev/fuse"
    if problem:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail(f"media test prerequisite missing: {problem}")
        pytest.skip(problem)


class Stick:
    """An exFAT image on a loop device, mounted through FUSE at ``mnt``."""

    def __init__(self, root: Path, size_mb: int = 320) -> None:
        self.image = root / "stick.img"
        self.mnt = root / "mnt"
        self.mnt.mkdir(parents=True)
        with open(self.image, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        subprocess.run(["mkfs.exfat", "-L", "CVTEST", str(self.image)], check=True,
                       capture_output=True)
        self.loop = subprocess.run(["losetup", "--find", "--show", str(self.image)],
                                   check=True, capture_output=True, text=True).stdout.strip()

    def mount(self) -> None:
        subprocess.run(["mount.exfat-fuse", "-o", "nosuid,nodev,noexec", self.loop,
                        str(self.mnt)], check=True, capture_output=True)

    def fuse_pid(self) -> int:
        """The FUSE process serving our mount (started by us, found by its arguments)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"mount.exfat-fuse") and \
                    str(self.mnt).encode() in args:
                return int(entry.name)
        raise AssertionError("no FUSE process serves the stick")

    def pull(self) -> None:
        os.kill(self.fuse_pid(), signal.SIGKILL)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)

    def detach(self) -> None:
        self.unmount()
        subprocess.run(["losetup", "-d", self.loop], capture_output=True)


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Stick]:
    _need_media()
    s = Stick(tmp_path / "media")
    try:
        yield s
    finally:
        s.detach()


def test_stick_pulled_mid_copy_loses_nothing(pair: Pair, tmp_path: Path, exfat: Stick) -> None:
    exfat.mount()
    ch = Chain(pair, tmp_path / "sealed")
    ch.seal([conv("c1", ["small one"])])
    noise = os.urandom(160 * 1024 * 1024)
    ch.seal([conv("c2", ["large one"])], blobs={hashlib.sha256(noise).hexdigest(): noise})
    ch.seal([conv("c3", ["after it"])])
    del noise
    outbox(exfat.mnt).mkdir(parents=True)
    for sealed in sorted((tmp_path / "sealed").glob("*.cvb")):
        shutil.copy(sealed, outbox(exfat.mnt) / sealed.name)
    subprocess.run(["sync"], check=True)
    staging_dir = pair.vault_path / "staging"
    errors: list[BaseException] = []

    def stage() -> None:
        try:
            staging.stage_from_media(pair.vault_path, exfat.mnt)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=stage)
    worker.start()
    deadline = time.monotonic() + 60
    while not list(staging_dir.glob(".web-00000002.cvb.tmp-*")):
        assert worker.is_alive() and time.monotonic() < deadline, "copy never started"
        time.sleep(0.001)
    exfat.pull()
    worker.join(60)

    assert len(errors) == 1 and isinstance(errors[0], MediaError), errors
    assert errors[0].exit_code == 5
    assert [s.bundle_file for s in getattr(errors[0], "staged")] == ["web-00000001.cvb"]
    assert [s.bundle_file for s in staging.pending(pair.vault_path)] == ["web-00000001.cvb"]
    assert not [p for p in staging_dir.iterdir() if ".tmp-" in p.name]

    # The stick comes back: the copy is redone, nothing staged twice, all ingested.
    exfat.unmount()
    exfat.mount()
    kept = staging.pending(pair.vault_path)[0].path.stat().st_ino
    outs = ingest.ingest_media(pair.vault_path, exfat.mnt, media_label="CVTEST")
    assert [(o.bundle_file, o.status) for o in outs] == [
        ("web-00000001.cvb", "ingested"), ("web-00000002.cvb", "ingested"),
        ("web-00000003.cvb", "ingested")]
    assert staging.pending(pair.vault_path) == [] and kept > 0
    with open_store(pair) as conn:
        assert conn.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1

    # Receipts really are on the exFAT file system after a fresh mount.
    exfat.unmount()
    exfat.mount()
    found = {receipts.verify_file(p, pair.exporter.trust()).body["bundle_file"]
             for p in receipts.on_media(exfat.mnt)}
    assert found == {"web-00000001.cvb", "web-00000002.cvb", "web-00000003.cvb"}


def test_read_only_stick_ingests_and_says_receipts_failed(pair: Pair, tmp_path: Path,
                                                          cli: object) -> None:
    """Receipts cannot be written: the ingest stands, the error says so (exit 5)."""
    if os.geteuid() != 0:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail("media test prerequisite missing: needs root")
        pytest.skip("needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        Chain(pair, outbox(mnt)).seal([conv("c1", ["hello"])])
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)

        res = cli("vault", "ingest", mnt, "--home", pair.vault_path, "--json")  # type: ignore

        assert res.code == 5
        doc = res.json()
        assert [o["status"] for o in doc["outcomes"]] == ["ingested"]
        assert doc["error"]["error"] == "media_read_only"
        with open_store(pair) as conn:
            assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
        assert len(list((pair.vault_path / "receipts").glob("*.receipt.json"))) == 1
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _io() -> dict[str, int]:
    pairs = (ln.split(": ") for ln in Path("/proc/self/io").read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def _receipts_on(mnt: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in receipts.on_media(mnt)}


@pytest.mark.media
def test_junk_on_a_real_stick_is_never_copied_nor_read_twice(pair: Pair, tmp_path: Path,
                                                              exfat: Stick) -> None:
    """A large non-bundle on exFAT: refused on its first bytes, recognised when re-inserted."""
    exfat.mount()
    box = outbox(exfat.mnt)
    box.mkdir(parents=True)
    junk = box / "huge-00000001.cvb"
    with open(junk, "wb") as fh:
        fh.write(b"PK\x03\x04")
        for _ in range(96):
            fh.write(b"\x5a" * (1024 * 1024))
    ch = Chain(pair, box)
    ch.seal([conv("c1", ["hello"])])
    subprocess.run(["sync"], check=True)
    exfat.unmount()
    exfat.mount()

    before = _io()
    outs = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, exfat.mnt)}
    first = _io()

    assert (outs["huge-00000001.cvb"].status, outs["huge-00000001.cvb"].code) == \
        ("quarantined", "bad_magic")
    assert outs["web-00000001.cvb"].status == "ingested"
    assert first["rchar"] - before["rchar"] < 32 * 1024 * 1024, "junk read in bulk"
    assert first["wchar"] - before["wchar"] < 32 * 1024 * 1024, "junk copied"
    assert max(p.stat().st_size for p in (pair.vault_path / "quarantine").iterdir()) <= 4096

    # Inserted again (a fresh mount): nothing read in bulk, no receipt rewritten.
    exfat.unmount()
    exfat.mount()
    said = _receipts_on(exfat.mnt)
    assert len(said) == 2
    again = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, exfat.mnt)}
    second = _io()
    assert again["huge-00000001.cvb"].recognised and again["web-00000001.cvb"].recognised
    assert second["rchar"] - first["rchar"] < 32 * 1024 * 1024, "junk read again"
    assert _receipts_on(exfat.mnt) == said
    assert junk.stat().st_size == 96 * 1024 * 1024 + 4, "the junk stays on the stick"

    # The junk is taken off the stick: its receipt goes with the next insertion.
    junk.unlink()
    ch.seal([conv("c2", ["next day"])])
    exfat.unmount()
    exfat.mount()
    ingest.ingest_media(pair.vault_path, exfat.mnt)
    exfat.unmount()
    exfat.mount()
    left = {receipts.verify_file(p, pair.exporter.trust()).body["bundle_file"]
            for p in receipts.on_media(exfat.mnt)}
    assert left == {"web-00000001.cvb", "web-00000002.cvb"}
