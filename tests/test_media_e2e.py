"""Real media end to end: exFAT and ext4 images on loop devices, real udev, the real daemon.

Each test formats images with the real tools, puts sealed bundles on them,
starts ``python -m vault vault daemon`` in its own process and attaches the
images with ``losetup``. The daemon must notice them through udev (pyudev),
mount, ingest, write receipts and unmount, all by itself. The daemon only
takes devices whose file system label starts with this test's random
prefix, so nothing else on the machine is touched.

The daemon runs under an audit hook that ends it (exit 86) if anything
creates an IPv4/IPv6 socket, and each test stops it with SIGTERM and
expects exit 0.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import media_kit as mk
from conftest import Pair, make_pair
from vault import receipts
from vault_kit import Chain, conv, count, open_store

pytestmark = pytest.mark.media


@pytest.fixture
def setup(tmp_path: Path):
    mk.require(udev=True, exfat=True)
    pair = make_pair(tmp_path)
    prefix = mk.token()
    mount_root = tmp_path / "mnt"
    loops: list[str] = []
    yield pair, prefix, mount_root, loops
    for devnode in loops:
        mk.detach(devnode)
    mk.lazy_unmount_under(mount_root)


def start(pair: Pair, prefix: str, mount_root: Path, name: str = "daemon",
          **kw: bool) -> mk.DaemonProcess:
    mk.configure(pair.vault_path, match=f"ID_FS_LABEL={prefix}*", mount_root=mount_root, **kw)
    daemon = mk.DaemonProcess(pair.vault_path, pair.root / f"{name}.log")
    daemon.wait_for(r"watching for media")
    return daemon


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified_receipts(pair: Pair, point: Path) -> dict[str, receipts.Receipt]:
    """Receipts on the media, verified as the exporter verifies them."""
    trust = pair.exporter.trust()
    found = {}
    for path in receipts.on_media(point):
        r = receipts.verify_file(path, trust)
        found[r.body["bundle_file"]] = r
    return found


def stored_ids(pair: Pair) -> set[tuple[str, str]]:
    with open_store(pair) as conn:
        return set(conn.execute("SELECT source, conversation_id FROM conversations"))


def test_daemon_ingests_an_exfat_stick_and_writes_receipts(setup) -> None:
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    sealed = [chain.seal([conv(f"c{i}", ["hello", f"order {i}"])]) for i in range(3)]
    image = mk.exfat_image(pair.root / "stick.img", prefix + "A",
                           mk.outbox_files([s.path for s in sealed]))

    daemon = start(pair, prefix, mount_root)
    with daemon:
        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}A")
        assert mk.mounts_of(loops[0]) == [], "the stick must be unmounted when safe"
        assert list(mount_root.iterdir()) == [], "mount points are removed"
        assert daemon.stop() == 0, daemon.text()
    assert "NETWORK SOCKET" not in log
    assert re.search(rf"reading {prefix}A \(/dev/loop\d+, exfat\)", log)
    mk.detach(loops.pop())

    with mk.mounted_image(image, readonly=True) as point:
        got = verified_receipts(pair, point)
        on_stick = sorted(p.name for p in (point / "chatvault" / "outbox").iterdir())
    assert sorted(got) == [s.path.name for s in sealed]
    for s in sealed:
        assert got[s.path.name].status == "ingested"
        assert got[s.path.name].bundle_sha256 == s.sha256
    assert on_stick == [s.path.name for s in sealed], "bundles stay unless delete_ingested"
    assert stored_ids(pair) == {("web", f"c{i}") for i in range(3)}
    with open_store(pair) as conn:
        rows = conn.execute("SELECT media_label FROM bundles").fetchall()
    assert rows == [(prefix + "A",)] * 3


def test_sticks_attached_together_are_handled_one_at_a_time(setup) -> None:
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    images = []
    for n, source in enumerate(["alpha", "beta", "gamma"]):
        bundles = [chain.seal([conv(f"{source}{i}", ["hi"])], source=source).path
                   for i in range(2)]
        images.append(mk.exfat_image(pair.root / f"{source}.img", f"{prefix}{n}",
                                     mk.outbox_files(bundles)))

    with start(pair, prefix, mount_root) as daemon:
        for image in images:
            loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}\d", count=3)
        assert daemon.stop() == 0, log

    # every "reading X" is followed by "safe to remove X" before the next medium starts
    events = re.findall(rf"(reading|safe to remove) ({prefix}\d)", log)
    assert len(events) == 6, log
    for i in range(0, 6, 2):
        assert events[i][0] == "reading" and events[i + 1] == ("safe to remove", events[i][1])
    assert sorted(e[1] for e in events[::2]) == [f"{prefix}{n}" for n in range(3)]
    for devnode in loops:
        mk.detach(devnode)
    loops.clear()
    for image in images:
        with mk.mounted_image(image, readonly=True) as point:
            assert {r.status for r in verified_receipts(pair, point).values()} == {"ingested"}
            assert len(receipts.on_media(point)) == 2
    assert len(stored_ids(pair)) == 6


def test_attached_before_start_with_delete_ingested(setup) -> None:
    """Coldplug: a stick already there when the daemon starts is taken too."""
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    sealed = [chain.seal([conv(f"c{i}", ["hello"])]) for i in range(2)]
    image = mk.exfat_image(pair.root / "stick.img", prefix + "C",
                           mk.outbox_files([s.path for s in sealed]))
    loops.append(mk.attach(image))

    with start(pair, prefix, mount_root, delete_ingested=True) as daemon:
        log = daemon.wait_for(rf"safe to remove {prefix}C")
        assert "1 already attached" in log
        assert daemon.stop() == 0
    mk.detach(loops.pop())
    with mk.mounted_image(image, readonly=True) as point:
        assert list((point / "chatvault" / "outbox").iterdir()) == []
        assert len(verified_receipts(pair, point)) == 2


def test_stick_without_chatvault_folder_is_not_written(setup) -> None:
    """Read-only really is read-only: the image does not change by one byte."""
    pair, prefix, mount_root, loops = setup
    image = mk.exfat_image(pair.root / "other.img", prefix + "X")
    with mk.mounted_image(image) as point:
        (point / "holiday.txt").write_text("not for the vault")
    before = sha256(image)

    with start(pair, prefix, mount_root) as daemon:
        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}X")
        assert daemon.stop() == 0
    assert "nothing to do" in log
    mk.detach(loops.pop())
    assert sha256(image) == before


def test_ext4_stick_through_the_kernel_driver(setup) -> None:
    mk.require(udev=True, exfat=False, ext4=True)
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    sealed = chain.seal([conv("e1", ["hello"])])
    image = mk.ext4_image(pair.root / "ext4.img", prefix + "E",
                          mk.outbox_files([sealed.path]))

    with start(pair, prefix, mount_root) as daemon:
        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}E")
        assert daemon.stop() == 0
    assert re.search(rf"reading {prefix}E \(/dev/loop\d+, ext4\)", log)
    devnode = loops.pop()
    mk.detach(devnode)
    with mk.loop(image) as devnode:
        point = pair.root / "check"
        point.mkdir()
        subprocess.run(["mount", "-o", "ro", devnode, str(point)], check=True)
        try:
            found = receipts.on_media(point)
        finally:
            subprocess.run(["umount", str(point)], check=True)
    assert [p.name.split(".")[0] for p in found] == ["web-00000001"]
    assert stored_ids(pair) == {("web", "e1")}


# -- a stick pulled mid-copy -------------------------------------------------------------

BIG = 384 * 1024 * 1024


def _big_conversation(blob: bytes) -> dict:
    c = conv("big", ["the scan you asked for"])
    c["messages"][0]["attachments"] = [{"sha256": hashlib.sha256(blob).hexdigest(),
                                        "size": len(blob), "name": "scan.bin"}]
    return c


def _wait_partial_copy(staging: Path, name: str, total: int, timeout: float = 120) -> Path:
    """The temporary file staging writes while copying ``name``, once it holds some bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in staging.iterdir():
            if entry.name.startswith(f".{name}") and 0 < entry.stat().st_size < total:
                return entry
        time.sleep(0.002)
    raise AssertionError(f"no partial copy of {name} seen in {staging}")


@pytest.mark.slow
def test_stick_pulled_mid_copy_loses_nothing(setup) -> None:
    """Kill the FUSE process serving the stick while a large bundle is being copied."""
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    blob = os.urandom(BIG)
    first = chain.seal([conv("small1", ["first"])])
    big = chain.seal([_big_conversation(blob)], blobs={hashlib.sha256(blob).hexdigest(): blob})
    last = chain.seal([conv("small3", ["last"])])
    del blob
    sealed = [first, big, last]
    image = mk.exfat_image(pair.root / "stick.img", prefix + "P",
                           mk.outbox_files([s.path for s in sealed]), size_mb=1024)

    with start(pair, prefix, mount_root) as daemon:
        devnode = mk.attach(image)
        loops.append(devnode)
        partial = _wait_partial_copy(pair.vault_path / "staging", big.path.name, big.size)
        pid = mk.fuse_pid(devnode)
        assert pid is not None, "no FUSE process serves the stick"
        os.kill(pid, signal.SIGSTOP)  # freeze the copy where it is...
        assert partial.exists() and partial.stat().st_size < big.size, "copy finished first"
        os.kill(pid, signal.SIGKILL)  # ...and pull the stick
        daemon.wait_for(rf"{prefix}P went away while being read")
        daemon.wait_for(rf"{prefix}P: 1 bundle\(s\): 1 ingested")  # what was fully staged
        assert daemon.alive()

        # what was fully staged is in; the rest is not, and nothing half-done remains
        assert stored_ids(pair) == {("web", "small1")}
        assert not [p for p in (pair.vault_path / "staging").iterdir()
                    if p.name.startswith(".")], "a partial copy was left in staging"
        with open_store(pair) as conn:
            assert count(conn, "bundles") == 1

        # pull out, put back in: the next insertion finishes the job
        mk.detach(loops.pop())
        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}P")
        assert daemon.stop() == 0, log

    assert stored_ids(pair) == {("web", "small1"), ("web", "big"), ("web", "small3")}
    mk.detach(loops.pop())
    with mk.mounted_image(image, readonly=True) as point:
        got = verified_receipts(pair, point)
        for s in sealed:  # the bundles are still on the stick, unharmed
            assert sha256(point / "chatvault" / "outbox" / s.path.name) == s.sha256
    assert {name: r.status for name, r in got.items()} == {
        first.path.name: "duplicate", big.path.name: "ingested", last.path.name: "ingested"}



@pytest.mark.slow
def test_sigterm_mid_copy_unmounts_and_the_next_start_finishes(setup) -> None:
    """systemctl stop while a large bundle is copied: that copy ends, the next stays."""
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    blob = os.urandom(BIG)
    big = chain.seal([_big_conversation(blob)], blobs={hashlib.sha256(blob).hexdigest(): blob})
    del blob
    after = chain.seal([conv("after", ["not copied after the signal"])])
    image = mk.exfat_image(pair.root / "stick.img", prefix + "S",
                           mk.outbox_files([big.path, after.path]), size_mb=1024)

    with start(pair, prefix, mount_root) as daemon:
        loops.append(mk.attach(image))
        _wait_partial_copy(pair.vault_path / "staging", big.path.name, big.size)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.stop() == 0, daemon.text()
    log = daemon.text()
    assert re.search(rf"1 bundle\(s\) staged from {prefix}S are ingested at the next start; "
                     rf".*safe to remove {prefix}S", log), log
    assert f"staged {after.path.name}" not in log, "a bundle was copied after SIGTERM"
    assert mk.mounts_of(loops[0]) == [] and stored_ids(pair) == set()

    with start(pair, prefix, mount_root, name="again") as daemon:
        daemon.wait_for(rf"{prefix}S: 2 bundle\(s\): 1 duplicate, 1 ingested")  # coldplug
        log = daemon.wait_for(rf"safe to remove {prefix}S")
        assert daemon.stop() == 0
    assert "ingesting 1 bundle(s) left in staging" in log
    assert stored_ids(pair) == {("web", "big"), ("web", "after")}


@pytest.mark.slow
def test_sigterm_mid_ingest_ingests_no_further_bundle(setup) -> None:
    """systemctl stop during an ingest run: the bundle in hand is committed, no other.

    The signal follows the first bundle's ingest; whether the big second one
    had begun by then is up to the scheduler, so both are right: it is then
    ingested whole, or left in staging with the third.
    """
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    first = chain.seal([conv("first", ["in before the signal"])])
    blob = os.urandom(BIG // 3)
    big = chain.seal([_big_conversation(blob)], blobs={hashlib.sha256(blob).hexdigest(): blob})
    del blob
    last = chain.seal([conv("last", ["left for the next start"])])
    image = mk.exfat_image(pair.root / "stick.img", prefix + "I",
                           mk.outbox_files([s.path for s in (first, big, last)]), size_mb=512)

    with start(pair, prefix, mount_root) as daemon:
        loops.append(mk.attach(image))
        daemon.wait_for(rf"ingested {first.path.name}", timeout=180)
        daemon.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert daemon.stop() == 0, daemon.text()
        took = time.monotonic() - signalled
    log = daemon.text()
    assert f"ingested {last.path.name}" not in log, "a bundle was ingested after SIGTERM"
    said = re.search(rf"stopping: ([12]) of 3 bundle\(s\) from {prefix}I ingested, ([12]) "
                     rf"left in staging for the next start; .*safe to remove {prefix}I", log)
    assert said and int(said[1]) + int(said[2]) == 3, log
    assert "receipt(s) written" not in log and mk.mounts_of(loops[0]) == []
    done = {("web", "first")} | ({("web", "big")} if said[1] == "2" else set())
    assert stored_ids(pair) == done, f"{took:.1f} s"

    with start(pair, prefix, mount_root, name="again") as daemon:
        log = daemon.wait_for(rf"safe to remove {prefix}I")
        assert daemon.stop() == 0
    assert f"ingesting {said[2]} bundle(s) left in staging" in log
    assert stored_ids(pair) == {("web", "first"), ("web", "big"), ("web", "last")}
    mk.detach(loops.pop())
    with mk.mounted_image(image, readonly=True) as point:
        got = verified_receipts(pair, point)
    assert {r.status for r in got.values()} == {"duplicate"} and len(got) == 3


# -- sticks that go away, or cannot be written -------------------------------------------

def test_stick_pulled_while_queued_is_not_read_under_its_name(setup) -> None:
    """A queued stick pulled, another given the same loop device: only the other is read."""
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    images = {}
    for name in "AB":
        sealed = chain.seal([conv(f"conv{name}", ["hi"])], source=f"src{name.lower()}")
        images[name] = mk.exfat_image(pair.root / f"{name}.img", prefix + name,
                                      mk.outbox_files([sealed.path]))
    lock = os.open(pair.vault_path / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the daemon is busy: sticks wait their turn
        with start(pair, prefix, mount_root) as daemon:
            daemon.wait_for("another ingest is running")
            first = mk.attach(images["A"])
            loops.append(first)
            daemon.wait_for(rf"noticed {prefix}A")
            mk.detach(loops.pop())
            daemon.wait_for(rf"{prefix}A \({first}, exfat\) went away before its turn")
            loops.append(mk.attach(images["B"]))
            assert loops[0] == first, "losetup gave the second stick another device"
            daemon.wait_for(rf"noticed {prefix}B")
            fcntl.flock(lock, fcntl.LOCK_UN)
            log = daemon.wait_for(rf"safe to remove {prefix}B")
            assert daemon.stop() == 0, log
    finally:
        os.close(lock)
    assert f"reading {prefix}A" not in log
    assert len(re.findall(rf"reading {prefix}B", log)) == 1, log
    with open_store(pair) as conn:
        rows = conn.execute("SELECT media_label FROM bundles").fetchall()
    assert rows == [(prefix + "B",)]
    assert stored_ids(pair) == {("srcb", "convB")}


def test_write_protected_exfat_stick_is_safe_to_remove(setup) -> None:
    """losetup -r: exFAT through FUSE behaves as ext4 does (warning, receipts at home)."""
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    sealed = chain.seal([conv("ro1", ["hello"])])
    image = mk.exfat_image(pair.root / "ro.img", prefix + "R", mk.outbox_files([sealed.path]))
    before = sha256(image)
    with start(pair, prefix, mount_root) as daemon:
        loops.append(mk.attach(image, readonly=True))
        log = daemon.wait_for(rf"safe to remove {prefix}R")
        assert daemon.stop() == 0, log
    assert re.search(rf"{prefix}R is write-protected .*no receipts written", log), log
    assert " ERROR " not in log, log
    assert stored_ids(pair) == {("web", "ro1")}
    assert len(list((pair.vault_path / "receipts").glob("*.receipt.json"))) == 1
    mk.detach(loops.pop())
    assert sha256(image) == before


@pytest.mark.slow
def test_stick_pulled_before_its_receipts_gets_them_when_inserted_again(setup) -> None:
    pair, prefix, mount_root, loops = setup
    chain = Chain(pair, pair.root / "sealed")
    first = chain.seal([conv("first", ["hello"])])
    blob = os.urandom(BIG // 4)
    big = chain.seal([_big_conversation(blob)], blobs={hashlib.sha256(blob).hexdigest(): blob})
    del blob
    image = mk.exfat_image(pair.root / "stick.img", prefix + "G",
                           mk.outbox_files([first.path, big.path]), size_mb=256)

    with start(pair, prefix, mount_root) as daemon:
        devnode = mk.attach(image)
        loops.append(devnode)
        daemon.wait_for(rf"staged {big.path.name}", timeout=120)
        # pulled while its bundles are ingested (a busy loop device is detached
        # as soon as the read-only mount lets go of it)
        subprocess.run(["losetup", "-d", devnode], check=True)
        loops.pop()
        log = daemon.wait_for(rf"{prefix}G went away before its receipts were written",
                              timeout=120)
        assert re.search(r"insert it again to get them \(copies are in .*receipts\)", log)
        assert f"safe to remove {prefix}G" not in log
        assert stored_ids(pair) == {("web", "first"), ("web", "big")}

        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}G")
        assert daemon.stop() == 0, log
    mk.detach(loops.pop())
    with mk.mounted_image(image, readonly=True) as point:
        got = verified_receipts(pair, point)
    assert {name: r.status for name, r in got.items()} == {
        first.path.name: "duplicate", big.path.name: "duplicate"}
