"""Helpers for the tests that use real media: images, loop devices, the daemon process.

Nothing here is a test. Images are sparse files formatted with the real
tools (``mkfs.exfat``, ``mkfs.ext4``), attached with ``losetup`` and
filled through the same FUSE driver the daemon uses. Every helper that
attaches or mounts undoes it in a ``finally`` block: a leaked loop device
or mount would break later runs.

:func:`require` decides between skipping and failing: with
``CHATVAULT_REQUIRE_MEDIA_TESTS=1`` (CI) a missing prerequisite fails the
test, otherwise it skips with the reason.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO

REQUIRED = os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1"

#: runs chatvault with an audit hook that kills the process (exit 86) the
#: moment anything creates an IPv4 or IPv6 socket
NO_NETWORK = r"""
import os, runpy, socket, sys
def _guard(event, args):
    if event == "socket.__new__" and len(args) > 1 and args[1] in (socket.AF_INET,
                                                                    socket.AF_INET6):
        os.write(2, b"NETWORK SOCKET CREATED\n")
        os._exit(86)
sys.addaudithook(_guard)
if os.environ.get("MEDIA_KIT_CONTROL") == "1":
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sys.argv = ["chatvault"] + sys.argv[1:]
runpy.run_module("vault", run_name="__main__")
"""


def missing(*, udev: bool = True, exfat: bool = True, ext4: bool = False) -> list[str]:
    """What this machine lacks for the media tests (empty: all there)."""
    gaps = []
    if os.geteuid() != 0:
        gaps.append("root")
    if not Path("/dev/loop-control").exists() or not shutil.which("losetup"):
        gaps.append("loop devices (losetup, /dev/loop-control)")
    if exfat:
        for tool in ("mkfs.exfat", "mount.exfat-fuse"):
            if not shutil.which(tool):
                gaps.append(tool)
        if not Path("/dev/fuse").exists():
            gaps.append("/dev/fuse")
    if ext4 and not shutil.which("mkfs.ext4"):
        gaps.append("mkfs.ext4")
    if udev and not Path("/run/udev/control").exists():
        gaps.append("a running systemd-udevd")
    return gaps


def require(**kw: bool) -> None:
    gaps = missing(**kw)
    if not gaps:
        return
    text = "real-media test needs " + ", ".join(gaps)
    if REQUIRED:
        pytest.fail(text + " (CHATVAULT_REQUIRE_MEDIA_TESTS=1)")
    pytest.skip(text)


def token() -> str:
    """A label prefix no other device carries (exFAT labels hold 11 characters)."""
    return "CV" + secrets.token_hex(3).upper()


# -- images and loop devices ---------------------------------------------------------

def attach(image: Path, *, readonly: bool = False) -> str:
    """``losetup --find``; ``readonly`` makes a write-protected medium (``-r``)."""
    out = subprocess.run(["losetup", *(["-r"] if readonly else []), "--find", "--show",
                          str(image)], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def detach(devnode: str) -> None:
    """Detach, undoing any mount of it first (a test that failed may leave one)."""
    for point in mounts_of(devnode):
        subprocess.run(["umount", "-l", point], capture_output=True)
    for _ in range(50):
        done = subprocess.run(["losetup", "-d", devnode], capture_output=True, text=True)
        if done.returncode == 0 or "No such device" in done.stderr:
            return
        time.sleep(0.1)


def backing_file(devnode: str) -> str | None:
    name = os.path.basename(devnode)
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


@contextmanager
def loop(image: Path) -> Iterator[str]:
    devnode = attach(image)
    try:
        yield devnode
    finally:
        detach(devnode)


def mounts_of(devnode: str) -> list[str]:
    """Mount points of ``devnode`` (by major:minor) in this namespace."""
    try:
        rdev = os.stat(devnode).st_rdev
    except OSError:
        return []
    want = f"{os.major(rdev)}:{os.minor(rdev)}"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[2] == want:
            points.append(fields[4])
    return points


def fuse_pid(devnode: str) -> int | None:
    """The exFAT FUSE process serving ``devnode``, if one runs."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (state != "Z" and argv and b"exfat" in os.path.basename(argv[0])
                and devnode.encode() in argv):
            return int(entry)
    return None


@contextmanager
def mounted_image(image: Path, *, readonly: bool = False) -> Iterator[Path]:
    """Attach and FUSE-mount an exFAT image for the test itself; undone on exit."""
    with loop(image) as devnode:
        point = Path(tempfile.mkdtemp(prefix="cv-test-mnt-"))
        opts = "ro" if readonly else "rw"
        subprocess.run(["mount.exfat-fuse", "-o", opts, devnode, str(point)], check=True,
                       capture_output=True)
        try:
            yield point
        finally:
            subprocess.run(["umount", str(point)], capture_output=True)
            if point.is_mount():
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
            point.rmdir()


def exfat_image(path: Path, label: str, files: dict[str, Path] | None = None,
                size_mb: int = 64) -> Path:
    """A sparse exFAT image, with ``files`` ({path on media: local file}) copied on."""
    with open(path, "wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    subprocess.run(["mkfs.exfat", "-L", label, str(path)], check=True, capture_output=True)
    if files:
        with mounted_image(path) as point:
            for rel, src in files.items():
                (point / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, point / rel)
    return path


def ext4_image(path: Path, label: str, files: dict[str, Path], size_mb: int = 64) -> Path:
    """An ext4 image filled from a folder by ``mkfs.ext4 -d`` (no mount needed)."""
    tree = Path(tempfile.mkdtemp(prefix="cv-ext4-"))
    try:
        for rel, src in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tree / rel)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(path),
                        f"{size_mb}M"], check=True, capture_output=True)
    finally:
        shutil.rmtree(tree)
    return path


def outbox_files(bundles: list[Path]) -> dict[str, Path]:
    return {f"chatvault/outbox/{b.name}": b for b in bundles}


# -- the daemon ------------------------------------------------------------------------

def configure(vault_home: Path, *, match: str, mount_root: Path,
              delete_ingested: bool = False) -> None:
    """Set the ``[daemon]`` keys of a vault home's config.toml."""
    cfg = vault_home / "config.toml"
    text = cfg.read_text()
    values = {"device_match": f'"{match}"', "mount_root": f'"{mount_root}"',
              "delete_ingested": "true" if delete_ingested else "false"}
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    cfg.write_text(text)


class DaemonProcess:
    """``python -m vault vault daemon`` in a fresh process, guarded against IP sockets."""

    def __init__(self, home: Path, log: Path, *, args: list[str] | None = None,
                 env: dict[str, str] | None = None, wrap: list[str] | None = None) -> None:
        """``wrap``: a command the daemon's command line is appended to (a sandbox)."""
        full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [*(wrap or []), sys.executable, "-c", NO_NETWORK, "vault", "daemon", "--home",
             str(home), *(args or [])], stdout=subprocess.DEVNULL, stderr=self._fh,
            env=full, cwd=str(REPO))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 90) -> str:
        """Wait until ``pattern`` (a regex) has appeared ``count`` times in the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before "
                                     f"{pattern!r}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} (x{count}) within {timeout} s:\n{self.text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


def lazy_unmount_under(root: Path) -> None:
    """Last-resort cleanup: detach any mount left below ``root``."""
    prefix = str(root).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True)
