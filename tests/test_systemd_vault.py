"""The vault daemon's systemd unit: valid, hardened, and workable as hardened.

``systemd-analyze verify`` and ``security --offline`` check the unit file.
They cannot say whether the daemon still *works* inside it, and the test
machine has no systemd as PID 1 to start the unit. So the media tests
rebuild the unit's confinement from its own lines and run the real daemon
on real sticks inside it:

* ``CapabilityBoundingSet`` and ``NoNewPrivileges`` through ``setpriv``;
* ``SystemCallFilter`` as a seccomp allow list (the groups expanded by
  ``systemd-analyze syscall-filter``), ``RestrictAddressFamilies`` as
  conditions on ``socket(2)``, ``MemoryDenyWriteExecute`` as
  ``PR_SET_MDWE``, all loaded through libseccomp before the daemon starts.

Not rebuilt: the device cgroup (``DeviceAllow``), ``ProtectSystem`` and the
other mount-namespace options, ``IPAddressDeny``.
"""

from __future__ import annotations

import ctypes.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import media_kit as mk
import unit_kit as uk
from conftest import make_pair
from vault import config, receipts
from vault_kit import Chain, conv

UNIT = uk.UNITS / "chatvault-vault.service"


def directives() -> dict[str, list[str]]:
    return uk.directives(UNIT.name)


def _copy_for_verify(tmp_path: Path) -> Path:
    return uk.copy_for_verify(tmp_path, UNIT.name, "vault daemon --home /var/lib/chatvault")


@uk.needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    uk.assert_verifies(_copy_for_verify(tmp_path), UNIT.name)


@uk.needs_analyze
def test_exposure_is_as_low_as_mounting_allows(tmp_path: Path) -> None:
    level, out = uk.exposure(_copy_for_verify(tmp_path), UNIT.name)
    # root with CAP_SYS_ADMIN, host network namespace and block devices are
    # what the job needs; everything else is closed
    assert level <= 2.5, out
    for closed in ("Service cannot allocate Internet sockets",
                   "Service blocks all IP address ranges",
                   "Service cannot create writable executable memory mappings",
                   "Service cannot load kernel modules"):
        assert re.search(rf"✓ .*{closed}", out), closed


def test_unit_keeps_udev_and_the_stick_but_no_network() -> None:
    d = directives()
    for key, value in [("Type", "notify"), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("IPAddressDeny", "any"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_NETLINK"),
                       ("CapabilityBoundingSet", "CAP_SYS_ADMIN CAP_DAC_OVERRIDE"),
                       ("DevicePolicy", "closed"), ("KillMode", "mixed"),
                       ("MemoryDenyWriteExecute", "yes"), ("StateDirectory", "chatvault"),
                       ("ReadWritePaths", "/var/lib/chatvault /run/chatvault"),
                       ("UMask", "0077")]:
        assert d[f"Service.{key}"] == [value], key
    # the two it must not have, each explained in a comment
    assert "Service.PrivateNetwork" not in d and "Service.PrivateDevices" not in d
    text = UNIT.read_text()
    assert re.search(r"^# .*NOT PrivateNetwork=yes", text, re.M)
    assert re.search(r"^# Devices: NOT PrivateDevices=yes", text, re.M)
    assert "/dev/fuse rw" in d["Service.DeviceAllow"]
    assert "block-sd rw" in d["Service.DeviceAllow"]


def test_default_mount_root_is_writable_in_the_unit() -> None:
    root = config.VAULT_DEFAULTS["daemon"]["mount_root"]
    writable = directives()["Service.ReadWritePaths"][0].split()
    assert any(root.startswith(w.lstrip("-") + "/") for w in writable), (root, writable)


# -- the daemon inside the unit's confinement -------------------------------------------

CONFINE = r"""
import ctypes, errno, json, os, sys
spec = json.loads(sys.argv[1])
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                       ctypes.c_uint, ctypes.c_void_p]
lib.seccomp_load.argtypes = [ctypes.c_void_p]

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

ALLOW, EQ = 0x7FFF0000, 4
ctx = lib.seccomp_init(0x00050000 | errno.EPERM)
for name in spec["allow"]:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0 or name == "socket":
        continue
    assert lib.seccomp_rule_add_array(ctx, ALLOW, nr, 0, None) == 0, name
sock = lib.seccomp_syscall_resolve_name(b"socket")
for family in spec["families"]:
    cmp = Cmp(0, EQ, family, 0)
    assert lib.seccomp_rule_add_array(ctx, ALLOW, sock, 1, ctypes.byref(cmp)) == 0
if spec["mdwe"]:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(65, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())  # PR_SET_MDWE
assert lib.seccomp_load(ctx) == 0
os.execv(sys.argv[2], sys.argv[2:])
"""

FAMILIES = {"AF_UNIX": 1, "AF_NETLINK": 16, "AF_INET": 2, "AF_INET6": 10}


def _expand(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a ``@group`` as this systemd knows it, nested groups expanded."""
    seen = seen if seen is not None else set()
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], check=True,
                         capture_output=True, text=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= _expand(item, seen) if item.startswith("@") else {item}
    return calls


def _names(items: str) -> set[str]:
    calls: set[str] = set()
    for item in items.split():
        calls |= _expand(item) if item.startswith("@") else {item}
    return calls


def confinement(drop_caps: tuple[str, ...] = ()) -> list[str]:
    """The command prefix that rebuilds the unit's confinement (see the module doc)."""
    d = directives()
    allowed: set[str] = set()
    for value in d["Service.SystemCallFilter"]:
        if value.startswith("~"):
            allowed -= _names(value[1:])
        else:
            allowed |= _names(value)
    spec = {"allow": sorted(allowed),
            "families": [FAMILIES[f] for f in d["Service.RestrictAddressFamilies"][0].split()],
            "mdwe": d["Service.MemoryDenyWriteExecute"] == ["yes"]}
    caps = [c for c in d["Service.CapabilityBoundingSet"][0].split() if c not in drop_caps]
    bounding = ",".join(["-all"] + [f"+{c.removeprefix('CAP_').lower()}" for c in caps])
    assert d["Service.NoNewPrivileges"] == ["yes"]
    return ["setpriv", "--no-new-privs", f"--bounding-set={bounding}", "--inh-caps=-all",
            sys.executable, "-c", CONFINE, json.dumps(spec)]


def _require_confinement() -> None:
    mk.require(udev=True, exfat=True, ext4=True)
    gaps = [t for t in ("setpriv", "systemd-analyze") if not shutil.which(t)]
    if ctypes.util.find_library("seccomp") is None:
        gaps.append("libseccomp")
    if gaps:
        (pytest.fail if mk.REQUIRED else pytest.skip)("confinement needs " + ", ".join(gaps))


def _two_sticks(root: Path, prefix: str) -> tuple[object, list[Path]]:
    """An exFAT stick, and an ext4 one whose chatvault folder belongs to another user."""
    pair = make_pair(root)
    chain = Chain(pair, root / "sealed")
    a = chain.seal([conv("x1", ["on exfat"])], source="fat")
    b = chain.seal([conv("e1", ["on ext4"])], source="ext")
    fat = mk.exfat_image(root / "fat.img", prefix + "F", mk.outbox_files([a.path]))
    tree = root / "tree"
    (tree / "chatvault" / "outbox").mkdir(parents=True)
    shutil.copyfile(b.path, tree / "chatvault" / "outbox" / b.path.name)
    for path in [tree / "chatvault", *(tree / "chatvault").rglob("*")]:
        shutil.chown(path, 1000, 1000)
        path.chmod(0o700 if path.is_dir() else 0o600)
    ext = root / "ext.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", prefix + "E", "-d", str(tree), str(ext),
                    "32M"], check=True, capture_output=True)
    return pair, [fat, ext]


@pytest.mark.media
def test_daemon_works_inside_the_units_confinement(tmp_path: Path) -> None:
    _require_confinement()
    prefix = mk.token()
    pair, images = _two_sticks(tmp_path, prefix)
    mount_root = tmp_path / "mnt"
    mk.configure(pair.vault_path, match=f"ID_FS_LABEL={prefix}*", mount_root=mount_root)
    loops: list[str] = []
    try:
        with mk.DaemonProcess(pair.vault_path, tmp_path / "d.log", wrap=confinement()) as d:
            d.wait_for("watching for media")
            for image in images:
                loops.append(mk.attach(image))
            log = d.wait_for(rf"safe to remove {prefix}[FE]", count=2)
            assert d.stop() == 0, log
        assert "ERROR" not in log, log
    finally:
        for devnode in loops:
            mk.detach(devnode)
        mk.lazy_unmount_under(mount_root)
    with mk.mounted_image(images[0], readonly=True) as point:
        assert [r.name for r in receipts.on_media(point)][0].startswith("fat-00000001.")
    assert len(list((pair.vault_path / "receipts").glob("ext-*"))) == 1


@pytest.mark.media
@pytest.mark.parametrize("dropped,failing", [("CAP_DAC_OVERRIDE", "E"),
                                             ("CAP_SYS_ADMIN", "F")])
def test_each_capability_is_needed(tmp_path: Path, dropped: str, failing: str) -> None:
    """Without CAP_DAC_OVERRIDE the ext4 stick cannot be read; without CAP_SYS_ADMIN
    nothing can be mounted: the unit's capability set is the minimum."""
    _require_confinement()
    prefix = mk.token()
    pair, images = _two_sticks(tmp_path, prefix)
    image = images[1] if failing == "E" else images[0]
    mount_root = tmp_path / "mnt"
    mk.configure(pair.vault_path, match=f"ID_FS_LABEL={prefix}*", mount_root=mount_root)
    loops: list[str] = []
    try:
        with mk.DaemonProcess(pair.vault_path, tmp_path / "d.log",
                              wrap=confinement(drop_caps=(dropped,))) as d:
            d.wait_for("watching for media")
            loops.append(mk.attach(image))
            log = d.wait_for(rf"ERROR vault\.\w+: .*{prefix}{failing}|"
                             rf"{prefix}{failing}: .*(denied|not permitted)")
            assert d.stop() == 0, log
    finally:
        for devnode in loops:
            mk.detach(devnode)
        mk.lazy_unmount_under(mount_root)
    assert "Permission denied" in log or "not permitted" in log, log
    assert not list((pair.vault_path / "receipts").glob("*.json"))


@pytest.mark.media
@pytest.mark.slow
def test_a_private_network_namespace_would_hide_udev(tmp_path: Path) -> None:
    """Why the unit has no PrivateNetwork=yes: udev's events do not reach another netns."""
    mk.require(udev=True, exfat=True)
    listen = ("import pyudev,sys\nm=pyudev.Monitor.from_netlink(pyudev.Context())\n"
              "m.filter_by('block'); m.start(); print('listening', flush=True)\n"
              "d=m.poll(timeout=float(sys.argv[1]))\nprint('event' if d else 'nothing')\n")
    image = mk.exfat_image(tmp_path / "n.img", mk.token())
    results = {}
    for name, prefix in (("host", []), ("private", ["unshare", "--net"])):
        proc = subprocess.Popen([*prefix, sys.executable, "-c", listen, "10"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        with mk.loop(image):
            time.sleep(0.5)
        results[name] = proc.communicate(timeout=60)[0].strip()
    assert results == {"host": "event", "private": "nothing"}
