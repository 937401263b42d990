"""Which driver mounts a medium, and with which flags and options.

A :class:`Plan` is chosen from the file system udev reports and the drivers
at hand, before anything is mounted: the kernel's driver where it has one,
FUSE for exFAT when it has not, a refusal for any other file system (the
table in :mod:`vault.mounting`). Every plan carries ``nosuid``, ``nodev``,
``noexec`` and ``nosymfollow``, read-only unless receipts are to be written;
:mod:`vault.mounting` mounts by it and checks the kernel applied it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vault.errors import MediaError

#: mount(2) flags every plan is made of
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOSYMFOLLOW = 1, 2, 4, 8, 256
SAFE_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOSYMFOLLOW

KERNEL_DATA = {
    "vfat": "uid=0,gid=0,fmask=0177,dmask=0077,shortname=mixed,utf8,flush",
    "exfat": "uid=0,gid=0,fmask=0177,dmask=0077,iocharset=utf8",
    "ext4": "", "ext3": "", "ext2": "",
}
FUSE_DATA = "uid=0,gid=0,umask=0077"


@dataclass(frozen=True)
class Plan:
    """How one file system gets mounted: driver, type, flags and data options."""

    fs_type: str
    driver: str  # "kernel" | "fuse"
    readonly: bool
    data: str

    @property
    def flags(self) -> int:
        return SAFE_FLAGS | (MS_RDONLY if self.readonly else 0)

    def options(self) -> str:
        """The whole option string, as ``mount -o`` would take it."""
        base = ["ro" if self.readonly else "rw", "nosuid", "nodev", "noexec", "nosymfollow"]
        return ",".join(base + ([self.data] if self.data else []))


def kernel_filesystems(path: Path = Path("/proc/filesystems")) -> set[str]:
    """File systems the running kernel has loaded (modules may add more on demand)."""
    try:
        return {line.split()[-1] for line in path.read_text().splitlines() if line.strip()}
    except OSError:
        return set()


def plan(fs_type: str, *, readonly: bool, kernel: set[str],
         fuse_helper: str | None) -> Plan:
    """Choose the driver and options for ``fs_type``; MediaError when not supported."""
    if fs_type == "exfat" and "exfat" not in kernel and fuse_helper:
        return Plan(fs_type, "fuse", readonly, FUSE_DATA)
    if fs_type in KERNEL_DATA:
        return Plan(fs_type, "kernel", readonly, KERNEL_DATA[fs_type])
    shown = fs_type or "no recognisable file system"
    raise MediaError(f"{shown}: chatvault mounts exFAT, FAT and ext2/3/4 media only")

