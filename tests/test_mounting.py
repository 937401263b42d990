"""Mounting: driver and option choice, mount point names, and real mounts checked.

The first half needs nothing: the choice of driver and options for each
file system, mount point naming and refusals. The second half (marked
``media``) mounts real images on loop devices and checks what the kernel
actually applied: read-only, nosuid, nodev, noexec and nosymfollow as seen
in /proc/self/mountinfo, and their effect (a write, a symlink, an exec).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

import media_kit as mk
from vault import atomic, mounting, mountplan
from vault.errors import MediaError, MediaMissing, MediaReadOnly

FUSE = "/usr/sbin/mount.exfat-fuse"


# -- driver and options ------------------------------------------------------------------

def test_exfat_goes_to_fuse_only_when_the_kernel_lacks_it() -> None:
    fuse = mounting.plan("exfat", readonly=True, kernel={"ext4", "fuseblk"}, fuse_helper=FUSE)
    kernel = mounting.plan("exfat", readonly=True, kernel={"exfat"}, fuse_helper=FUSE)
    assert (fuse.driver, kernel.driver) == ("fuse", "kernel")
    assert "umask=0077" in fuse.data and "iocharset=utf8" in kernel.data


def test_exfat_without_helper_still_tries_the_kernel() -> None:
    """A kernel module may load on demand, so the kernel is worth a try."""
    p = mounting.plan("exfat", readonly=True, kernel=set(), fuse_helper=None)
    assert p.driver == "kernel" and p.fs_type == "exfat"


@pytest.mark.parametrize("fs", ["vfat", "ext4", "ext3", "ext2"])
def test_fat_and_ext_use_the_kernel(fs: str) -> None:
    p = mounting.plan(fs, readonly=False, kernel=set(), fuse_helper=FUSE)
    assert p.driver == "kernel" and p.fs_type == fs


def test_fat_files_belong_to_root_only() -> None:
    p = mounting.plan("vfat", readonly=True, kernel={"vfat"}, fuse_helper=None)
    assert {"uid=0", "gid=0", "fmask=0177", "dmask=0077"} <= set(p.data.split(","))


@pytest.mark.parametrize("fs", ["ntfs", "btrfs", "xfs", "squashfs", "iso9660", ""])
def test_other_file_systems_are_refused(fs: str) -> None:
    with pytest.raises(MediaError) as info:
        mounting.plan(fs, readonly=True, kernel={fs, "ext4"}, fuse_helper=FUSE)
    assert "exFAT, FAT and ext2/3/4" in str(info.value)


@pytest.mark.parametrize("readonly", [True, False])
def test_every_mount_is_nosuid_nodev_noexec_nosymfollow(readonly: bool) -> None:
    for fs, kernel in [("exfat", set()), ("vfat", {"vfat"}), ("ext4", {"ext4"})]:
        p = mounting.plan(fs, readonly=readonly, kernel=kernel, fuse_helper=FUSE)
        opts = p.options().split(",")
        assert opts[:5] == ["ro" if readonly else "rw", "nosuid", "nodev", "noexec",
                            "nosymfollow"]
        flags = mountplan.MS_NOSUID | mountplan.MS_NODEV | mountplan.MS_NOEXEC
        assert p.flags & flags == flags
        assert bool(p.flags & mountplan.MS_RDONLY) == readonly
        assert p.flags & mountplan.MS_NOSYMFOLLOW


def test_kernel_filesystems_reads_both_columns(tmp_path: Path) -> None:
    f = tmp_path / "filesystems"
    f.write_text("nodev\tsysfs\nnodev\tfuse\n\text4\n\tfuseblk\n\tvfat\n")
    assert mounting.kernel_filesystems(f) == {"sysfs", "fuse", "ext4", "fuseblk", "vfat"}
    assert mounting.kernel_filesystems(tmp_path / "absent") == set()


def test_mount_errors_say_what_to_do() -> None:
    exfat = mounting.plan("exfat", readonly=True, kernel=set(), fuse_helper=None)
    rw = mounting.plan("vfat", readonly=False, kernel=set(), fuse_helper=None)
    err = mounting._mount_error(errno.ENODEV, "/dev/sdz1", exfat)
    assert "no exfat driver" in err.detail and "apt install exfat-fuse" in err.detail
    assert isinstance(mounting._mount_error(errno.EROFS, "/dev/sdz1", rw), MediaReadOnly)
    assert isinstance(mounting._mount_error(errno.ENXIO, "/dev/sdz1", rw), MediaMissing)
    assert "damaged" in mounting._mount_error(errno.EINVAL, "/dev/sdz1", rw).detail


# -- mount points ----------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("CVTEST1", "CVTEST1"), ("My Stick/1", "My_Stick_1"), ("../../etc", "etc"),
    ("Ünïcode ☃", "n_code"), ("", "media"), ("...", "media"), ("x" * 80, "x" * 48),
])
def test_mount_point_names_are_sanitised(tmp_path: Path, name: str, expected: str) -> None:
    root = tmp_path / "media"
    target = mounting.mount_point(root, name)
    assert target == root / expected and target.is_dir()
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700


def test_mount_point_skips_a_folder_in_use(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "STICK").mkdir(parents=True, mode=0o700)
    (root / "STICK" / "leftover").write_text("x")
    (root / "STICK-2").symlink_to("/etc")
    assert mounting.mount_point(root, "STICK") == root / "STICK-3"
    assert mounting.mount_point(root, "STICK") == root / "STICK-3", "an empty one is reused"


def test_mount_root_must_not_be_a_symlink_or_shared(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(MediaError, match="symlink"):
        mounting.mount_point(tmp_path / "link", "STICK")
    real.chmod(0o777)
    with pytest.raises(MediaError, match="not be writable by others"):
        mounting.mount_point(real, "STICK")


def test_only_block_devices_are_mounted(tmp_path: Path) -> None:
    fake = tmp_path / "sdz1"
    fake.write_bytes(b"\0" * 4096)
    with pytest.raises(MediaError, match="not a block device"):
        mounting.mount(str(fake), "ext4", tmp_path, readonly=True)
    with pytest.raises(MediaMissing):
        mounting.mount(str(tmp_path / "gone"), "ext4", tmp_path, readonly=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_node_naming_another_device_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "sdz1"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    with pytest.raises(MediaMissing, match="another device"):
        mounting.mount(str(node), "ext4", tmp_path / "m", readonly=True, devnum=(8, 17))


# -- real mounts ---------------------------------------------------------------------------

def _ext4_with_traps(tmp_path: Path) -> Path:
    """An ext4 image holding a symlink out of the medium and an executable script."""
    tree = tmp_path / "tree"
    (tree / "chatvault").mkdir(parents=True)
    (tree / "chatvault" / "escape").symlink_to("/etc/hostname")
    script = tree / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o4755)
    image = tmp_path / "traps.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "TRAPS", "-d", str(tree), str(image),
                    "32M"], check=True, capture_output=True)
    return image


@pytest.mark.media
def test_ext4_read_only_mount_blocks_writes_symlinks_and_exec(tmp_path: Path) -> None:
    mk.require(udev=False, exfat=False, ext4=True)
    image = _ext4_with_traps(tmp_path)
    root = tmp_path / "media"
    with mk.loop(image) as devnode:
        target = mounting.mount_point(root, "TRAPS")
        m = mounting.mount(devnode, "ext4", target, readonly=True)
        try:
            opts = mounting.mount_info(target).split(",")
            assert {"ro", "nosuid", "nodev", "noexec", "nosymfollow"} <= set(opts)
            with pytest.raises(OSError) as info:
                (target / "new").write_text("x")
            assert info.value.errno == errno.EROFS
            with pytest.raises(OSError) as info:
                (target / "chatvault" / "escape").read_text()
            assert info.value.errno == errno.ELOOP
            with pytest.raises(PermissionError):
                subprocess.run([str(target / "run.sh")], capture_output=True)
        finally:
            mounting.unmount(m)
        assert mounting.mount_info(target) is None and not target.exists()


@pytest.mark.media
def test_busy_mount_is_not_declared_safe(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mk.require(udev=False, exfat=False, ext4=True)
    monkeypatch.setattr(mounting, "UNMOUNT_BACKOFF", (0.01, 0.02))
    image = _ext4_with_traps(tmp_path)
    with mk.loop(image) as devnode:
        target = mounting.mount_point(tmp_path / "media", "TRAPS")
        m = mounting.mount(devnode, "ext4", target, readonly=False)
        try:
            with open(target / "open.txt", "w") as held:
                held.write("held open")
                with pytest.raises(MediaError, match="do not remove the medium yet"):
                    mounting.unmount(m)
                assert mounting.mount_info(target) is not None
            mounting.sync(m)
        finally:
            mounting.unmount(m)
        assert mounting.mount_info(target) is None


@pytest.mark.media
def test_exfat_through_fuse_gets_every_flag_and_writes_atomically(tmp_path: Path) -> None:
    mk.require(udev=False, exfat=True)
    image = mk.exfat_image(tmp_path / "x.img", "CVMOUNT")
    root = tmp_path / "media"
    with mk.loop(image) as devnode:
        for readonly in (False, True):
            target = mounting.mount_point(root, "CVMOUNT")
            m = mounting.mount(devnode, "exfat", target, readonly=readonly)
            try:
                assert m.plan.driver == "fuse" or "exfat" in mounting.kernel_filesystems()
                opts = set(mounting.mount_info(target).split(","))
                # libfuse 2 drops noexec and nosymfollow; the bind remount restores them
                assert {"nosuid", "nodev", "noexec", "nosymfollow"} <= opts
                assert ("ro" if readonly else "rw") in opts
                if readonly:
                    assert (target / "r.json").read_bytes() == b"{}"
                else:
                    atomic.write_bytes(target / "r.json", b"{}")
                    mounting.sync(m)
            finally:
                mounting.unmount(m)
            assert mounting.mount_info(target) is None
            if m.fuse_pid:
                assert mk.fuse_pid(devnode) is None, "FUSE helper still running"


@pytest.mark.media
def test_vfat_by_the_kernel_or_a_clear_refusal(tmp_path: Path) -> None:
    mk.require(udev=False, exfat=False)
    if not os.path.exists("/usr/sbin/mkfs.vfat") and not os.path.exists("/sbin/mkfs.vfat"):
        if mk.REQUIRED:
            pytest.fail("mkfs.vfat missing (dosfstools)")
        pytest.skip("mkfs.vfat missing (dosfstools)")
    image = tmp_path / "fat.img"
    with open(image, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    subprocess.run(["mkfs.vfat", "-n", "CVFAT", str(image)], check=True, capture_output=True)
    with mk.loop(image) as devnode:
        target = mounting.mount_point(tmp_path / "media", "CVFAT")
        try:
            m = mounting.mount(devnode, "vfat", target, readonly=True)
        except MediaError as exc:
            assert "vfat" not in mounting.kernel_filesystems()
            assert "no vfat driver" in exc.detail
            return
        try:
            assert {"ro", "noexec", "nosuid", "nodev"} <= set(
                mounting.mount_info(target).split(","))
        finally:
            mounting.unmount(m)


@pytest.mark.media
def test_stale_mounts_of_a_crashed_run_are_released(tmp_path: Path) -> None:
    mk.require(udev=False, exfat=False, ext4=True)
    image = _ext4_with_traps(tmp_path)
    root = tmp_path / "media"
    with mk.loop(image) as devnode:
        target = mounting.mount_point(root, "TRAPS")
        mounting.mount(devnode, "ext4", target, readonly=True)  # never unmounted: a crash
        (root / "empty").mkdir()
        assert mounting.release_stale(root) == 1
        assert mounting.mount_info(target) is None
        assert list(root.iterdir()) == []


def test_an_unusable_mount_root_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediaError, match="mount_root must be writable"):
        mounting.ensure_root(tmp_path / "file" / "media")
