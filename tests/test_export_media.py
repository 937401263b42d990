"""Real media: full, read-only, pulled mid-write, failing read-back, exFAT.

Mounts are real (tmpfs, loop devices with ext4 and FUSE exFAT), so these
tests need root; they skip without it, and fail under
``CHATVAULT_REQUIRE_MEDIA_TESTS=1``. In every case the run exits 5 with a
message saying what is wrong, nothing half-written is left under a bundle's
name, the bundle stays safe in the local outbox, and the next run on good
media finishes the job.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from export_kit import (bundle_files, check_consistent, conv, give_receipt, loop_image,
                        make_site, mount, need_root, sh, temporaries, tmpfs, unmount)
from vault import exporter

pytestmark = pytest.mark.media


def _big(n: int = 6, hex_chars: int = 60_000) -> list[dict]:
    """Data that seals to roughly n * hex_chars / 2 bytes (random hex halves)."""
    return [conv(f"c{i}", [os.urandom(hex_chars // 2).hex()]) for i in range(n)]


def _run(cli, site) -> tuple[int, dict, str]:
    res = cli("export", "run", *site.args(), "--json")
    return res.code, res.json(), res.err


def _nothing_on(folder: Path) -> None:
    assert bundle_files(folder) == [] and temporaries(folder) == []


def _written(site) -> list[str]:
    with site.state() as state:
        return [r.file_name for r in state.bundles() if r.media_written_at]


def test_full_media_refused_before_any_write(tmp_path: Path, cli) -> None:
    with tmpfs(tmp_path / "stick", "200k") as stick:
        site = make_site(tmp_path, convs=_big(), stick=stick)

        code, out, err = _run(cli, site)

        assert code == 5
        assert out["media"]["error"]["error"] == "media_full"
        message = out["media"]["error"]["message"]
        assert re.search(r"need \d+ bytes .*\d+ bytes free", message), message
        assert "no space" in err or "bytes free" in err
        _nothing_on(site.stick_outbox)
        assert len(bundle_files(site.outbox)) == 1 and _written(site) == []

        sh("mount", "-o", "remount,size=8m", stick)
        code, out, _ = _run(cli, site)
        assert code == 0 and len(out["media"]["written"]) == 1
        check_consistent(site, settled=True)


def test_disk_filling_up_during_the_write(tmp_path: Path, cli,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The space check passed (another writer, a lying file system); ENOSPC mid-copy."""
    with tmpfs(tmp_path / "stick", "256k") as stick:
        site = make_site(tmp_path, convs=_big(12), stick=stick)
        monkeypatch.setattr("vault.media.free_bytes", lambda path: 10**12)

        code, out, _ = _run(cli, site)

        assert code == 5
        error = out["media"]["error"]
        assert error["error"] == "media_full"
        assert re.search(r"no space left.*\d+ bytes needed", error["message"]), error
        _nothing_on(site.stick_outbox)
        assert shutil.disk_usage(stick).used < 64 * 1024  # the temporary is gone too
        monkeypatch.undo()
        sh("mount", "-o", "remount,size=8m", stick)
        assert _run(cli, site)[0] == 0
        check_consistent(site, settled=True)


@pytest.mark.parametrize("prepared", [False, True], ids=["fresh-stick", "used-stick"])
def test_read_only_media(tmp_path: Path, cli, prepared: bool) -> None:
    with tmpfs(tmp_path / "stick", "8m") as stick:
        if prepared:
            (stick / "chatvault" / "outbox").mkdir(parents=True)
        site = make_site(tmp_path, stick=stick)
        sh("mount", "-o", "remount,ro", stick)

        code, out, err = _run(cli, site)

        assert code == 5
        assert out["media"]["error"]["error"] == "media_read_only"
        assert "read-only" in out["media"]["error"]["message"]
        _nothing_on(site.stick_outbox)
        assert len(bundle_files(site.outbox)) == 1

        sh("mount", "-o", "remount,rw", stick)
        assert _run(cli, site)[0] == 0
        check_consistent(site, settled=True)


def test_read_only_stick_counts_bundles_written_to_another_one(tmp_path: Path, cli) -> None:
    """A bundle on an earlier stick, unacknowledged, still waits in the outbox: say so."""
    site = make_site(tmp_path)
    assert _run(cli, site)[0] == 0 and len(_written(site)) == 1
    with tmpfs(tmp_path / "second", "8m") as second:
        sh("mount", "-o", "remount,ro", second)
        res = cli("export", "run", "--home", site.exporter.path, "--media", second, "--json")
        assert res.code == 5 and res.json()["media"]["waiting"] == 1
        text = cli("export", "run", "--home", site.exporter.path, "--media", second)
        assert re.search(r"1 bundle\(s\) \([\d,]+ bytes\) wait in the local outbox",
                         text.out + text.err)


def test_stick_pulled_mid_write(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lazy unmount while the bundle's bytes are in flight, on a real ext4 device."""
    need_root()
    stick = tmp_path / "stick"
    with loop_image(tmp_path / "stick.img", "ext4", 32) as dev:
        mount(dev, stick, "ext4")
        site = make_site(tmp_path, convs=_big(), stick=stick, max_bundle_bytes=100 * 1024)

        def pull(step: str) -> None:
            if step == "media-written" and not hasattr(pull, "done"):
                pull.done = True  # type: ignore[attr-defined]
                sh("umount", "-l", stick)
        monkeypatch.setattr(exporter, "fault_hook", pull)
        try:
            code, out, err = _run(cli, site)
        finally:
            unmount(stick)
        assert code == 5
        assert out["media"]["error"]["error"] == "media_missing"
        assert "was the media removed" in out["media"]["error"]["message"]
        assert _written(site) == []

        mount(dev, stick, "ext4")
        try:
            # the bytes in flight survive only as a temporary, never under the bundle's name
            assert temporaries(site.stick_outbox) and bundle_files(site.stick_outbox) == []
            check_consistent(site)
            monkeypatch.setattr(exporter, "fault_hook", lambda step: None)
            code, out, _ = _run(cli, site)
            assert code == 0 and len(out["media"]["written"]) == len(bundle_files(site.outbox))
            check_consistent(site, settled=True)
        finally:
            unmount(stick)


def test_media_folder_removed_mid_write(tmp_path: Path, cli,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path)

    def yank(step: str) -> None:
        if step == "media-written":
            shutil.rmtree(site.stick / "chatvault")
    monkeypatch.setattr(exporter, "fault_hook", yank)

    code, out, _ = _run(cli, site)

    assert code == 5 and out["media"]["error"]["error"] == "media_missing"
    assert _written(site) == [] and len(bundle_files(site.outbox)) == 1
    monkeypatch.setattr(exporter, "fault_hook", lambda step: None)
    assert _run(cli, site)[0] == 0
    check_consistent(site, settled=True)


def test_read_back_mismatch_is_refused(tmp_path: Path, cli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A stick that returns other bytes than it was given (fake capacity, failing flash)."""
    site = make_site(tmp_path)

    def rot(step: str) -> None:
        if step == "media-readback":
            target = site.stick_outbox / "web-00000001.cvb"
            data = bytearray(target.read_bytes())
            data[-100] ^= 0x55
            target.write_bytes(bytes(data))
    monkeypatch.setattr(exporter, "fault_hook", rot)

    code, out, _ = _run(cli, site)

    assert code == 5 and out["media"]["error"]["error"] == "media_io"
    assert "read back differs" in out["media"]["error"]["message"]
    _nothing_on(site.stick_outbox)
    assert _written(site) == []


def test_damaged_local_copy_is_not_spread(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", "--home", site.exporter.path, "--media",
               tmp_path / "absent").code == 5
    local = site.outbox / "web-00000001.cvb"
    data = bytearray(local.read_bytes())
    data[200] ^= 1
    local.write_bytes(bytes(data))

    code, out, _ = _run(cli, site)

    assert code == 1 and out["media"]["error"]["error"] == "local_copy_damaged"
    _nothing_on(site.stick_outbox)


def test_exfat_stick_round_trip(tmp_path: Path, cli) -> None:
    """What real sticks carry: FUSE exFAT on a block device, write, receipt, tidy."""
    need_root()
    if shutil.which("mount.exfat-fuse") is None or shutil.which("mkfs.exfat") is None:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail("exFAT tools missing")
        pytest.skip("exFAT tools missing")
    stick = tmp_path / "stick"
    with loop_image(tmp_path / "stick.img", "exfat", 16) as dev:
        mount(dev, stick, "exfat")
        try:
            site = make_site(tmp_path, convs=_big(4), stick=stick, max_bundle_bytes=80 * 1024)
            code, out, _ = _run(cli, site)
            assert code == 0
            names = bundle_files(site.stick_outbox)
            assert len(names) >= 2
            check_consistent(site, settled=True)
            for name in names:
                give_receipt(site, site.vaults[0], name)
            subprocess.run(["sync"], check=True)
            code, out, _ = _run(cli, site)
            assert code == 0 and sorted(out["receipts"]["completed"]) == names
            assert bundle_files(site.stick_outbox) == []
            assert list((stick / "chatvault" / "receipts").iterdir()) == []
            assert bundle_files(site.outbox) == []
        finally:
            unmount(stick)


def _need_exfat() -> None:
    need_root()
    if shutil.which("mount.exfat-fuse") is None or shutil.which("mkfs.exfat") is None:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail("exFAT tools missing")
        pytest.skip("exFAT tools missing")


def _carry(dev: Path, stick: Path) -> None:
    """Unplug and plug in again: what reaches the other machine is on the device."""
    subprocess.run(["sync"], check=True)
    unmount(stick)
    mount(dev, stick, "exfat")


def _flip_middle_byte(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    return hashlib.sha256(bytes(data)).hexdigest()


def test_exfat_stray_damaged_copy_is_removed_and_nothing_is_lost(tmp_path: Path,
                                                                 cli) -> None:
    """A leftover damaged copy on an old exFAT stick, after every vault acknowledged it."""
    from vault import ingest

    _need_exfat()
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    name = "web-00000001.cvb"
    good = (site.stick_outbox / name).read_bytes()
    ingest.ingest_media(site.vaults[0].path, site.stick)
    assert _run(cli, site)[1]["receipts"]["completed"] == [name]
    old = tmp_path / "old-stick"
    with loop_image(tmp_path / "old.img", "exfat", 16) as dev:
        mount(dev, old, "exfat")
        try:
            copy = old / "chatvault" / "outbox" / name
            copy.parent.mkdir(parents=True)
            copy.write_bytes(good)
            _flip_middle_byte(copy)
            _carry(dev, old)
            [out] = ingest.ingest_media(site.vaults[0].path, old)
            assert out.status == "quarantined"
            _carry(dev, old)

            res = cli("export", "run", "--home", site.exporter.path, "--media", old, "--json")

            assert res.code == 0, res.err
            assert res.json()["receipts"]["damaged_removed"] == [name]
            _carry(dev, old)
            assert bundle_files(old / "chatvault" / "outbox") == []
            assert list((old / "chatvault" / "receipts").iterdir()) == []
        finally:
            unmount(old)
    status = cli("export", "status", "--home", site.exporter.path, "--json")
    assert status.code == 0 and status.json()["strays"][0]["removed_from_media_at"]


def test_exfat_damaged_copy_replaced_by_the_next_run(tmp_path: Path, cli) -> None:
    from vault import ingest

    _need_exfat()
    stick = tmp_path / "stick"
    with loop_image(tmp_path / "stick.img", "exfat", 16) as dev:
        mount(dev, stick, "exfat")
        try:
            site = make_site(tmp_path, stick=stick)
            assert _run(cli, site)[0] == 0
            name = "web-00000001.cvb"
            _flip_middle_byte(site.stick_outbox / name)
            _carry(dev, stick)
            [out] = ingest.ingest_media(site.vaults[0].path, stick)
            assert out.status == "quarantined"
            _carry(dev, stick)

            code, report, _ = _run(cli, site)

            assert code == 3 and report["receipts"]["damaged_removed"] == [name]
            assert [w["file"] for w in report["media"]["written"]] == [name]
            _carry(dev, stick)
            check_consistent(site, settled=True)
            [out] = ingest.ingest_media(site.vaults[0].path, stick)
            assert out.status == "ingested"
            _carry(dev, stick)
            code, report, _ = _run(cli, site)
            assert code == 0 and report["receipts"]["completed"] == [name]
        finally:
            unmount(stick)
