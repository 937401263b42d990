"""Which block devices the vault takes, and the udev events that bring them.

udev (through :mod:`pyudev`) announces every block device; the daemon takes
one only when all of these hold:

* it is a block device (``SUBSYSTEM=block``, a disk or a partition) that
  carries a file system (``ID_FS_USAGE=filesystem``): not a partition
  table, not swap, not an encrypted container;
* it passes the configured match (``[daemon] device_match``):

  ``usb``                   ``ID_BUS=usb`` (the default: USB sticks and disks)
  ``any``                   any such device, loop devices included (tests,
                            appliances with SD card readers)
  ``PROP=value[,P2=v2]``    every listed udev property matches; values are
                            shell-style patterns (``ID_FS_LABEL=CV*``)

* it is not mounted already (the vault's own disks are, so ``any`` never
  touches them).

Event bookkeeping lives in :class:`DeviceQueue`: a device is handled once
per insertion. An insertion is named by the device node and the kernel's
disk sequence number (``DISKSEQ``, new for every medium a loop device or a
card reader gets), or the file system UUID where the kernel has no
``DISKSEQ``. The ``change`` events udev sends again when a writer closes
the device (our own read-write mount does) are therefore ignored, and a
stick pulled and inserted again is handled again.

A stick pulled while it waits its turn leaves the queue (its ``remove``
event, or the ``change`` event without a file system that a detached loop
device or an emptied card reader sends). A device node is reused at once
(a loop device, ``/dev/sdb1`` for the next stick), so before each mount the
daemon asks :func:`medium_changed` whether the node still holds the medium
that was queued: same ``major:minor``, same disk sequence number, same file
system UUID, label and type. Anything else is another medium, or none.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

_PROP_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_UDEV_CONTROL = Path("/run/udev/control")


@dataclass(frozen=True)
class DeviceMatch:
    """The parsed ``device_match`` setting; :meth:`accepts` a udev property dict."""

    text: str
    props: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "DeviceMatch":
        """``usb``, ``any`` or ``PROP=pattern[,PROP=pattern]``; ValueError otherwise."""
        text = text.strip()
        if text == "usb":
            return cls(text, (("ID_BUS", "usb"),))
        if text == "any":
            return cls(text)
        props = []
        for part in text.split(","):
            name, sep, pattern = part.strip().partition("=")
            if not sep or not _PROP_NAME.match(name) or not pattern:
                raise ValueError(f'expected "usb", "any" or "PROPERTY=value[,PROPERTY=value]"'
                                 f", got {text!r}")
            props.append((name, pattern))
        return cls(text, tuple(props))

    def accepts(self, props: Mapping[str, str]) -> bool:
        """True when ``props`` describe a file system this match takes."""
        if not carries_filesystem(props):
            return False
        return all(fnmatch.fnmatchcase(props.get(name, ""), pattern)
                   for name, pattern in self.props)


def carries_filesystem(props: Mapping[str, str]) -> bool:
    return (props.get("SUBSYSTEM") == "block"
            and props.get("DEVTYPE") in ("disk", "partition")
            and props.get("ID_FS_USAGE") == "filesystem"
            and bool(props.get("DEVNAME")))


@dataclass(frozen=True)
class Device:
    """A block device as udev described it (only what the daemon needs)."""

    devnode: str
    fs_type: str
    label: str | None
    serial: str | None
    uuid: str | None
    devnum: tuple[int, int] | None
    insertion: str
    props: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> "Device":
        devnum = None
        if props.get("MAJOR", "").isdigit() and props.get("MINOR", "").isdigit():
            devnum = (int(props["MAJOR"]), int(props["MINOR"]))
        uuid = props.get("ID_FS_UUID") or None
        seq = props.get("DISKSEQ")
        return cls(devnode=props["DEVNAME"], fs_type=props.get("ID_FS_TYPE", ""),
                   label=props.get("ID_FS_LABEL") or None,
                   serial=props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL") or None,
                   uuid=uuid, devnum=devnum,
                   insertion=f"seq:{seq}" if seq else f"uuid:{uuid or '-'}",
                   props=dict(props))

    @property
    def key(self) -> tuple[str, str]:
        """Names one insertion of one medium (see the module docstring)."""
        return (self.devnode, self.insertion)

    @property
    def name(self) -> str:
        """What an operator recognises: the label, else the serial, else the node."""
        return self.label or self.serial or self.uuid or os.path.basename(self.devnode)

    def describe(self) -> str:
        return f"{self.name} ({self.devnode}, {self.fs_type or 'unknown'})"

    def differs_from(self, props: Mapping[str, str]) -> str | None:
        """Why udev's current ``props`` for this node are not this medium (None: same)."""
        if not carries_filesystem(props):
            return "no file system there any more"
        now = Device.from_properties(props)
        for what, queued, current in (("device number", self.devnum, now.devnum),
                                      ("disk sequence number", self.props.get("DISKSEQ"),
                                       props.get("DISKSEQ")),
                                      ("file system UUID", self.uuid, now.uuid),
                                      ("label", self.label, now.label),
                                      ("file system", self.fs_type, now.fs_type)):
            if queued != current:
                return f"another medium there now ({what} {current or 'none'})"
        return None


def mounted_devnums(mountinfo: Path = Path("/proc/self/mountinfo")) -> set[tuple[int, int]]:
    """``major:minor`` of every block device mounted in this mount namespace."""
    found: set[tuple[int, int]] = set()
    try:
        text = mountinfo.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and ":" in fields[2]:
            major, _, minor = fields[2].partition(":")
            if major.isdigit() and minor.isdigit():
                found.add((int(major), int(minor)))
    return found


class DeviceQueue:
    """Devices waiting to be handled, one insertion once, in arrival order.

    Fed from the udev thread with :meth:`offer`; the daemon's loop takes
    devices with :meth:`take`. Thread-safe.
    """

    def __init__(self, match: DeviceMatch,
                 is_mounted: Callable[[tuple[int, int]], bool] | None = None) -> None:
        self.match = match
        self._is_mounted = is_mounted or (lambda devnum: devnum in mounted_devnums())
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting: deque[Device] = deque()
        self._seen: set[tuple[str, str]] = set()
        self._ignored: set[tuple[str, str]] = set()  # said once each: not matched

    def offer(self, action: str, props: Mapping[str, str]) -> bool:
        """Take note of one udev event; True when a device was queued."""
        devnode = props.get("DEVNAME")
        if not devnode:
            return False
        if action == "remove" or not carries_filesystem(props):
            self._forget(devnode)
            return False
        if action not in ("add", "change"):
            return False
        device = Device.from_properties(props)
        with self._lock:
            # another insertion on this node, taken or not: what waited there was pulled
            dropped = self._drop_waiting(devnode, keep=device.key)
        _log_dropped(dropped)
        if not self.match.accepts(props):
            self._say_ignored(device)
            return False
        with self._lock:
            if device.key in self._seen:
                return False
            if device.devnum is not None and self._is_mounted(device.devnum):
                log.info("%s is mounted already; leaving it alone", device.describe())
                self._seen.add(device.key)
                return False
            self._seen.add(device.key)
            self._waiting.append(device)
            self._ready.notify()
        log.info("noticed %s", device.describe())
        return True

    def _say_ignored(self, device: Device) -> None:
        """Once per medium, unless mounted (the machine's own disks): why it is not read.

        Without it, an SD card or a stick behind a reader that udev does not
        call USB is inserted and nothing at all happens.
        """
        with self._lock:
            if device.key in self._ignored:
                return
            self._ignored.add(device.key)
        if device.devnum is not None and self._is_mounted(device.devnum):
            return
        log.info("ignoring %s: it does not match [daemon] device_match = %r (\"any\" takes "
                 "every device with a file system)", device.describe(), self.match.text)

    def _forget(self, devnode: str) -> None:
        with self._lock:
            self._ignored = {key for key in self._ignored if key[0] != devnode}
            gone = {key for key in self._seen if key[0] == devnode}
            self._seen -= gone
            dropped = self._drop_waiting(devnode)
        _log_dropped(dropped)
        if gone:
            log.debug("%s removed", devnode)

    def _drop_waiting(self, devnode: str,
                      keep: tuple[str, str] | None = None) -> list[Device]:
        """Take the devices queued on ``devnode`` (but ``keep``) out of the queue (lock held)."""
        dropped = [d for d in self._waiting if d.devnode == devnode and d.key != keep]
        for device in dropped:
            self._waiting.remove(device)
        return dropped

    def take(self, timeout: float) -> Device | None:
        with self._ready:
            if not self._ready.wait_for(lambda: bool(self._waiting), timeout=timeout):
                return None
            return self._waiting.popleft()

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def queued(self) -> list[Device]:
        with self._lock:
            return list(self._waiting)


def _log_dropped(dropped: list[Device]) -> None:
    for device in dropped:
        log.warning("%s went away before its turn: not read", device.describe())


def medium_changed(device: Device) -> str | None:
    """Why ``device.devnode`` no longer holds the medium that was queued (None: it does).

    Asks the kernel (the node's ``major:minor``, size and disk sequence
    number) and udev's database (the file system's UUID, label and type as
    udev last probed them): a node that holds no medium, or one udev has not
    finished probing, is not the medium that was queued either.
    """
    try:
        st = os.stat(device.devnode)
    except OSError as exc:
        return f"device gone ({exc.strerror})"
    devnum = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if device.devnum is not None and devnum != device.devnum:
        return "the device node now names another device"
    sysfs = Path(f"/sys/dev/block/{devnum[0]}:{devnum[1]}")
    try:
        if int((sysfs / "size").read_text()) == 0:
            return "device gone (no medium)"
    except (OSError, ValueError):
        return "device gone (not in /sys)"
    if device.props.get("DISKSEQ"):
        seq = _read(sysfs / "diskseq") or _read(sysfs.resolve().parent / "diskseq")
        if seq and seq != device.props["DISKSEQ"]:
            return f"another medium there now (disk sequence number {seq})"
    return device.differs_from(udev_properties(devnum))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def udev_properties(devnum: tuple[int, int]) -> dict[str, str]:
    """What udev's database says now about block device ``devnum`` (empty: nothing)."""
    import pyudev

    try:
        dev = pyudev.Devices.from_device_number(pyudev.Context(), "block",
                                                os.makedev(*devnum))
    except (pyudev.DeviceNotFoundError, OSError, ValueError):
        return {}
    return _props(dev)


class Watcher:
    """Listens to udev's block events on a thread and feeds a :class:`DeviceQueue`.

    The monitor starts listening before the devices already attached are
    listed (coldplug), so that nothing attached in between is missed; the
    queue drops the duplicates this may give.
    """

    def __init__(self, devices: DeviceQueue) -> None:
        import pyudev

        self.devices = devices
        self._context = pyudev.Context()
        self._monitor = pyudev.Monitor.from_netlink(self._context, source="udev")
        self._monitor.filter_by("block")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="udev", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> int:
        """Start listening, then queue matching devices already present; returns their count."""
        if not _UDEV_CONTROL.exists():
            log.warning("systemd-udevd does not seem to run (%s missing): inserted media "
                        "will not be noticed until it does", _UDEV_CONTROL)
        self._monitor.start()
        self._thread.start()
        found = 0
        for dev in self._context.list_devices(subsystem="block"):
            found += self.devices.offer("add", _props(dev))
        return found

    def _listen(self) -> None:
        try:
            while not self._stop.is_set():
                dev = self._monitor.poll(timeout=0.5)
                if dev is not None:
                    self.devices.offer(dev.action or "change", _props(dev))
        except BaseException as exc:  # noqa: BLE001 - reported by alive()
            self.error = exc
            log.error("udev monitor stopped: %s", exc)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _props(dev: Any) -> dict[str, str]:
    props = {str(k): str(v) for k, v in dev.properties.items()}
    props.setdefault("SUBSYSTEM", dev.subsystem or "")
    return props
