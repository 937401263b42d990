"""Mounting removable media safely: the right driver, the right flags, checked.

Media are untrusted, so every mount is ``nosuid,nodev,noexec,nosymfollow``
(read-only while bundles are read, read-write only while receipts are
written) and the flags are *checked* in ``/proc/self/mountinfo`` after
mounting: a mount that does not carry them is undone and refused.

Drivers, by the file system udev reports (``ID_FS_TYPE``):

=========  ===============================================================
exfat      the kernel's driver when ``/proc/filesystems`` lists it, else
           FUSE (``mount.exfat-fuse``); the kernel is still tried when the
           helper is missing, since a module may load on demand
vfat       the kernel (FAT16/FAT32)
ext2/3/4   the kernel (ext4 serves all three)
other      refused: each extra file system is more kernel code facing an
           untrusted disk, and exporters only write these
=========  ===============================================================

libfuse 2 silently drops ``noexec`` and ``nosymfollow``, so FUSE mounts get
their flags by a bind remount of the mount point right after mounting
(this changes only the mount, not the file system, which FUSE cannot
remount). For the same reason the daemon never remounts: it unmounts after
reading and mounts again read-write to write receipts.

A write-protected medium (a lock switch, ``losetup -r``) is refused a
read-write mount up front (``BLKROGET``), with :class:`MediaReadOnly`, as
the kernel drivers refuse it: ``mount.exfat-fuse -o rw`` would mount it
read-only with only a warning, and the bind remount would then mark the
mount itself ``rw``. For the same reason a read-write mount is checked with
``statvfs`` (which sees the file system's read-only flag, not only the
mount's) before it is used.

Kernel mounts are made with :func:`mount(2)` directly (no ``mount(8)``
helper lookup, no path canonicalisation); unmounts use ``UMOUNT_NOFOLLOW``.
Mount points are plain folders under ``[daemon] mount_root``, named after
the medium's label or serial reduced to ``[A-Za-z0-9._-]``, created and
checked with ``lstat`` so a symlink is never followed.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vault.errors import MediaError, MediaMissing, MediaReadOnly
from vault.mountplan import Plan, kernel_filesystems, plan

log = logging.getLogger(__name__)

MS_REMOUNT, MS_BIND = 32, 4096
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8
BLKROGET = 0x125E  # _IO(0x12, 94): is the block device read-only?
REQUIRED = ("nosuid", "nodev", "noexec")

FUSE_EXFAT = "mount.exfat-fuse"
#: pauses between unmount attempts while the mount is busy (seconds)
UNMOUNT_BACKOFF = (0.1, 0.3, 0.6, 1.0, 2.0, 3.0)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syncfs.argtypes = [ctypes.c_int]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Mounted:
    devnode: str
    target: Path
    plan: Plan
    fuse_pid: int | None = None


def mount_point(root: Path, name: str) -> Path:
    """A fresh, empty folder under ``root`` named after ``name`` (never a symlink)."""
    ensure_root(root)
    base = _UNSAFE.sub("_", name).strip("._-")[:48] or "media"
    busy = _mount_points()
    for n in range(1, 100):
        target = root / (base if n == 1 else f"{base}-{n}")
        if str(target) in busy:
            continue
        try:
            os.mkdir(target, 0o700)
        except FileExistsError:
            st = os.lstat(target)
            if not stat.S_ISDIR(st.st_mode) or os.listdir(target):
                continue
        return target
    raise MediaError(f"no free mount point for {base!r}", path=root)


def ensure_root(root: Path) -> None:
    """Create ``[daemon] mount_root`` if needed; refuse one others could tamper with."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(root)
    except OSError as exc:
        raise MediaError(f"cannot create the mount root ({exc.strerror}); [daemon] mount_root "
                         "must be writable (under systemd: below /run/chatvault)",
                         path=root) from None
    if not stat.S_ISDIR(st.st_mode):
        raise MediaError("mount root is not a folder (a symlink?)", path=root)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise MediaError("mount root must belong to this user and not be writable by "
                         "others", path=root)


def mount(devnode: str, fs_type: str, target: Path, *, readonly: bool,
          devnum: tuple[int, int] | None = None) -> Mounted:
    """Mount ``devnode`` on ``target`` safely (see the module doc); checked after."""
    _check_device(devnode, devnum)
    if not readonly and device_read_only(devnode):
        raise MediaReadOnly("cannot mount read-write: the medium is write-protected",
                            path=devnode)
    p = plan(fs_type, readonly=readonly, kernel=kernel_filesystems(),
             fuse_helper=shutil.which(FUSE_EXFAT))
    if p.driver == "fuse":
        mounted = _mount_fuse(devnode, target, p)
    else:
        _mount_kernel(devnode, target, p)
        mounted = Mounted(devnode, target, p)
    try:
        _check_flags(target, readonly)
    except MediaError:
        unmount(mounted, remove_dir=False)
        raise
    log.debug("mounted %s on %s (%s, %s)", devnode, target, p.driver, p.options())
    return mounted


def _check_device(devnode: str, devnum: tuple[int, int] | None) -> None:
    try:
        st = os.stat(devnode)
    except OSError as exc:
        raise MediaMissing(f"device gone ({exc.strerror})", path=devnode) from None
    if not stat.S_ISBLK(st.st_mode):
        raise MediaError("not a block device", path=devnode)
    if devnum and (os.major(st.st_rdev), os.minor(st.st_rdev)) != devnum:
        raise MediaMissing("device node now names another device", path=devnode)


def device_read_only(devnode: str) -> bool:
    """True when the kernel says the block device is read-only (False when unsure)."""
    try:
        fd = os.open(devnode, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flag = fcntl.ioctl(fd, BLKROGET, struct.pack("i", 0))
    except OSError:
        return False
    finally:
        os.close(fd)
    return struct.unpack("i", flag)[0] != 0


def _mount_kernel(devnode: str, target: Path, p: Plan) -> None:
    data = p.data.encode() if p.data else None
    if _libc.mount(devnode.encode(), str(target).encode(), p.fs_type.encode(),
                   p.flags, data) != 0:
        code = ctypes.get_errno()
        raise _mount_error(code, devnode, p)


def _mount_error(code: int, devnode: str, p: Plan) -> MediaError:
    what = f"cannot mount {p.fs_type} {'read-only' if p.readonly else 'read-write'}"
    if code == errno.ENODEV:
        hint = " (apt install exfat-fuse)" if p.fs_type == "exfat" else ""
        return MediaError(f"{what}: the kernel has no {p.fs_type} driver{hint}", path=devnode)
    if code in (errno.EROFS, errno.EACCES) and not p.readonly:
        return MediaReadOnly(f"{what}: the medium is write-protected", path=devnode)
    if code in (errno.ENOENT, errno.ENXIO, errno.ENOMEDIUM):
        return MediaMissing(f"{what}: the device is gone", path=devnode)
    return MediaError(f"{what}: {os.strerror(code)} (damaged file system?)", path=devnode)


def _mount_fuse(devnode: str, target: Path, p: Plan) -> Mounted:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    cmd = [shutil.which(FUSE_EXFAT) or FUSE_EXFAT, "-o", p.options(), devnode, str(target)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, timeout=60)
    except subprocess.TimeoutExpired:
        raise MediaError("mount.exfat-fuse did not finish within 60 s", path=devnode) from None
    if done.returncode != 0 or str(target) not in _mount_points():
        said = " ".join(done.stderr.split())[-300:] or f"exit status {done.returncode}"
        error: type[MediaError] = MediaError
        if not p.readonly and "read-only" in said:
            error = MediaReadOnly
        raise error(f"cannot mount exfat through FUSE: {said}", path=devnode)
    mounted = Mounted(devnode, target, p, _fuse_pid(target))
    # libfuse 2 drops noexec and nosymfollow: set every flag on the mount itself
    flags = MS_REMOUNT | MS_BIND | p.flags
    if _libc.mount(None, str(target).encode(), None, flags, None) != 0:
        code = ctypes.get_errno()
        unmount(mounted, remove_dir=False)
        raise MediaError(f"cannot restrict the FUSE mount: {os.strerror(code)}", path=target)
    return mounted


def _fuse_pid(target: Path) -> int | None:
    """The FUSE process serving ``target`` (it daemonises; we find it in /proc)."""
    want = str(target).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(b"mount.exfat") and want in argv:
            return int(entry)
    return None


def _check_flags(target: Path, readonly: bool) -> None:
    info = mount_info(target)
    if info is None:
        raise MediaError("mount vanished right after mounting", path=target)
    opts = set(info.split(","))
    missing = [o for o in (("ro" if readonly else "rw"),) + REQUIRED if o not in opts]
    if missing:
        raise MediaError(f"mounted without {','.join(missing)}; refusing to use it",
                         path=target)
    try:
        fs_flags = os.statvfs(target).f_flag
    except OSError as exc:
        raise MediaMissing(f"mount not usable ({exc.strerror})", path=target) from None
    if not readonly and fs_flags & os.ST_RDONLY:
        raise MediaReadOnly("the file system was mounted read-only (write-protected?)",
                            path=target)
    if "nosymfollow" not in opts:
        log.debug("kernel has no nosymfollow; symlinks on media are skipped by lstat")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, per-mount options) of every mount, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 5:
                out.append((_unescape(fields[4]), fields[5]))
    return out


def _mount_points() -> set[str]:
    return {point for point, _ in _mountinfo()}


def mount_info(target: Path) -> str | None:
    """The options of the topmost mount on ``target``, or None when not mounted."""
    found = None
    for point, opts in _mountinfo():
        if point == str(target):
            found = opts
    return found


def sync(mounted: Mounted) -> None:
    """Flush the medium's file system (``syncfs``); errors mean the medium is gone."""
    try:
        fd = os.open(mounted.target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise MediaMissing(f"cannot sync ({exc.strerror})", path=mounted.target) from None
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise MediaMissing(f"sync failed ({os.strerror(code)})", path=mounted.target)
    finally:
        os.close(fd)


def unmount(mounted: Mounted, *, remove_dir: bool = True) -> None:
    """Unmount, retrying while busy; then wait for FUSE and flush the device.

    Raises MediaError when the mount stays busy: the medium is then *not*
    safe to remove, and the caller must say so.
    """
    target = str(mounted.target).encode()
    for pause in UNMOUNT_BACKOFF + (None,):
        if _libc.umount2(target, UMOUNT_NOFOLLOW) == 0:
            break
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOENT):  # not (or no longer) mounted
            break
        if code != errno.EBUSY or pause is None:
            raise MediaError(f"cannot unmount ({os.strerror(code)}); do not remove the "
                             "medium yet", path=mounted.target)
        log.debug("%s busy; retrying the unmount in %.1f s", mounted.target, pause)
        time.sleep(pause)
    if mounted.fuse_pid:
        _wait_exit(mounted.fuse_pid, 30.0)
    flush_device(mounted.devnode)
    if remove_dir:
        try:
            os.rmdir(mounted.target)
        except OSError:
            pass


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait until the FUSE helper has written its last block and exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    log.warning("FUSE helper %d still running %.0f s after unmount", pid, timeout)


def flush_device(devnode: str) -> None:
    """Push the device's cached blocks to the hardware (quietly: it may be gone)."""
    try:
        fd = os.open(devnode, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("flushing %s: %s", devnode, exc.strerror)
    finally:
        os.close(fd)


def release_stale(root: Path) -> int:
    """Unmount what a previous run left mounted under ``root`` (after a crash)."""
    if not root.is_dir() or root.is_symlink():
        return 0
    prefix = str(root).rstrip("/") + "/"
    stale = [point for point, _ in _mountinfo() if point.startswith(prefix)]
    for point in reversed(stale):
        if _libc.umount2(point.encode(), UMOUNT_NOFOLLOW) != 0:
            _libc.umount2(point.encode(), UMOUNT_NOFOLLOW | MNT_DETACH)
        log.warning("unmounted %s, left mounted by an earlier run", point)
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            try:
                entry.rmdir()
            except OSError:
                pass
    return len(stale)
