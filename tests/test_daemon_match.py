"""Which devices the daemon takes: the device match and the event queue.

The property dicts below are udev's own words: the loop device ones were
recorded on the test machine (``udevadm monitor --udev --property`` while
attaching and detaching an exFAT image); the others are what ``udevadm
info`` prints for common hardware (a USB stick's partition and its whole
disk, an internal SATA disk, an SD card in a built-in reader, swap, LUKS).
"""

from __future__ import annotations

import pytest

from vault.udevwatch import Device, DeviceMatch, DeviceQueue, carries_filesystem

LOOP_EXFAT = {  # losetup of an exFAT image: recorded
    "ACTION": "change", "DEVPATH": "/devices/virtual/block/loop0", "SUBSYSTEM": "block",
    "DEVNAME": "/dev/loop0", "DEVTYPE": "disk", "DISKSEQ": "13", "SEQNUM": "830",
    "ID_FS_LABEL": "CVTEST1", "ID_FS_LABEL_ENC": "CVTEST1", "ID_FS_UUID": "7BD7-EC0C",
    "ID_FS_UUID_ENC": "7BD7-EC0C", "ID_FS_VERSION": "1.0", "ID_FS_TYPE": "exfat",
    "ID_FS_USAGE": "filesystem", "ID_PART_TABLE_TYPE": "dos", "MAJOR": "7", "MINOR": "0",
    "DEVLINKS": "/dev/disk/by-diskseq/13 /dev/disk/by-label/CVTEST1 /dev/disk/by-uuid/7BD7-EC0C",
    "TAGS": ":systemd:",
}
LOOP_DETACHED = {  # losetup -d of the same: recorded
    "ACTION": "change", "DEVPATH": "/devices/virtual/block/loop0", "SUBSYSTEM": "block",
    "DEVNAME": "/dev/loop0", "DEVTYPE": "disk", "DISKSEQ": "13", "SYSTEMD_READY": "0",
    "MAJOR": "7", "MINOR": "0", "DEVLINKS": "/dev/disk/by-diskseq/13", "TAGS": ":systemd:",
}
USB_PARTITION = {
    "DEVPATH": "/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/"
               "6:0:0:0/block/sdb/sdb1",
    "DEVNAME": "/dev/sdb1", "DEVTYPE": "partition", "DISKSEQ": "27", "PARTN": "1",
    "MAJOR": "8", "MINOR": "17", "SUBSYSTEM": "block", "ID_VENDOR": "SanDisk",
    "ID_MODEL": "Cruzer_Blade", "ID_SERIAL": "SanDisk_Cruzer_Blade_4C530001131229117092-0:0",
    "ID_SERIAL_SHORT": "4C530001131229117092", "ID_TYPE": "disk", "ID_BUS": "usb",
    "ID_USB_DRIVER": "usb-storage", "ID_PATH": "pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0",
    "ID_PART_TABLE_TYPE": "dos", "ID_FS_LABEL": "OFFICE_A", "ID_FS_UUID": "1A2B-3C4D",
    "ID_FS_VERSION": "FAT32", "ID_FS_TYPE": "vfat", "ID_FS_USAGE": "filesystem",
    "ID_PART_ENTRY_SCHEME": "dos", "ID_PART_ENTRY_NUMBER": "1",
}
USB_DISK = {**{k: v for k, v in USB_PARTITION.items() if not k.startswith(("ID_FS_",
                                                                           "ID_PART_ENTRY"))},
            "DEVNAME": "/dev/sdb", "DEVTYPE": "disk", "MINOR": "16",
            "DEVPATH": USB_PARTITION["DEVPATH"].rsplit("/", 1)[0]}
SATA_ROOT = {
    "DEVNAME": "/dev/sda2", "DEVTYPE": "partition", "SUBSYSTEM": "block", "MAJOR": "8",
    "MINOR": "2", "DISKSEQ": "1", "ID_BUS": "ata", "ID_SERIAL": "Samsung_SSD_870_S5Y1",
    "ID_FS_TYPE": "ext4", "ID_FS_USAGE": "filesystem", "ID_FS_UUID": "0f3c-root",
}
SD_CARD = {
    "DEVNAME": "/dev/mmcblk0p1", "DEVTYPE": "partition", "SUBSYSTEM": "block",
    "MAJOR": "179", "MINOR": "1", "DISKSEQ": "31", "ID_NAME": "SD32G",
    "ID_SERIAL": "0x5a3b91c2", "ID_FS_TYPE": "exfat", "ID_FS_USAGE": "filesystem",
    "ID_FS_LABEL": "CARD",
}
USB_SWAP = {**USB_PARTITION, "DEVNAME": "/dev/sdb2", "MINOR": "18", "ID_FS_TYPE": "swap",
            "ID_FS_USAGE": "other", "ID_FS_LABEL": ""}
USB_LUKS = {**USB_PARTITION, "DEVNAME": "/dev/sdb3", "MINOR": "19",
            "ID_FS_TYPE": "crypto_LUKS", "ID_FS_USAGE": "crypto"}

ALL = {"loop": LOOP_EXFAT, "loop_detached": LOOP_DETACHED, "usb": USB_PARTITION,
       "usb_disk": USB_DISK, "sata": SATA_ROOT, "sd": SD_CARD, "swap": USB_SWAP,
       "luks": USB_LUKS}


@pytest.mark.parametrize("match,taken", [
    ("usb", {"usb"}),
    ("any", {"usb", "loop", "sata", "sd"}),
    ("ID_FS_LABEL=CVTEST1", {"loop"}),
    ("ID_FS_LABEL=CV*", {"loop"}),
    ("ID_BUS=usb,ID_FS_TYPE=vfat", {"usb"}),
    ("ID_BUS=usb,ID_FS_TYPE=exfat", set()),
    ("ID_FS_TYPE=exfat", {"loop", "sd"}),
    ("ID_SERIAL_SHORT=4C53*", {"usb"}),
    ("ID_NAME=SD*", {"sd"}),
    ("ID_FS_USAGE=crypto", set()),  # never: not a file system
])
def test_device_match_takes_exactly(match: str, taken: set[str]) -> None:
    m = DeviceMatch.parse(match)
    assert {name for name, props in ALL.items() if m.accepts(props)} == taken


@pytest.mark.parametrize("text", ["", "USB", "usb,any", "id_bus=usb", "ID_BUS", "ID_BUS=",
                                  "=usb", "ID_BUS=usb,", "ID BUS=usb", "1D=x"])
def test_bad_device_match_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match='"usb", "any" or "PROPERTY=value'):
        DeviceMatch.parse(text)


def test_only_file_systems_on_block_devices() -> None:
    assert carries_filesystem(LOOP_EXFAT) and carries_filesystem(USB_PARTITION)
    for name in ("loop_detached", "usb_disk", "swap", "luks"):
        assert not carries_filesystem(ALL[name]), name
    assert not carries_filesystem({**USB_PARTITION, "SUBSYSTEM": "usb"})
    assert not carries_filesystem({**USB_PARTITION, "DEVTYPE": "usb_device"})


def test_device_names_what_an_operator_sees() -> None:
    usb = Device.from_properties(USB_PARTITION)
    assert (usb.name, usb.serial, usb.devnum, usb.fs_type) == (
        "OFFICE_A", "4C530001131229117092", (8, 17), "vfat")
    assert usb.describe() == "OFFICE_A (/dev/sdb1, vfat)"
    unlabelled = Device.from_properties({**USB_PARTITION, "ID_FS_LABEL": ""})
    assert unlabelled.name == "4C530001131229117092"
    bare = Device.from_properties({k: v for k, v in LOOP_EXFAT.items()
                                   if k not in ("ID_FS_LABEL", "ID_FS_UUID")})
    assert bare.name == "loop0"


def test_insertion_key_prefers_the_disk_sequence() -> None:
    a = Device.from_properties(LOOP_EXFAT)
    b = Device.from_properties({**LOOP_EXFAT, "DISKSEQ": "14"})
    c = Device.from_properties({k: v for k, v in LOOP_EXFAT.items() if k != "DISKSEQ"})
    assert a.key == ("/dev/loop0", "seq:13") and a.key != b.key
    assert c.key == ("/dev/loop0", "uuid:7BD7-EC0C")


def _queue(match: str = "any", mounted: set[tuple[int, int]] | None = None) -> DeviceQueue:
    return DeviceQueue(DeviceMatch.parse(match), is_mounted=lambda d: d in (mounted or set()))


def test_one_insertion_is_taken_once() -> None:
    q = _queue()
    # udev sends two change events on attach, and another when a writer closes the device
    assert q.offer("change", LOOP_EXFAT)
    assert not q.offer("change", LOOP_EXFAT)
    assert q.take(0).key == ("/dev/loop0", "seq:13")
    assert not q.offer("change", LOOP_EXFAT), "our own read-write mount must not loop"
    assert q.take(0) is None


def test_pulled_and_inserted_again_is_taken_again() -> None:
    q = _queue()
    assert q.offer("change", LOOP_EXFAT) and q.take(0)
    assert not q.offer("change", LOOP_DETACHED)  # losetup -d: the file system is gone
    assert q.offer("change", {**LOOP_EXFAT, "DISKSEQ": "14"})
    usb = _queue("usb")
    assert usb.offer("add", USB_PARTITION) and usb.take(0)
    assert not usb.offer("change", USB_PARTITION)
    assert not usb.offer("remove", USB_PARTITION)
    assert usb.offer("add", USB_PARTITION), "without DISKSEQ change, remove resets it"


def test_several_devices_wait_in_arrival_order() -> None:
    q = _queue()
    for n in range(3):
        assert q.offer("change", {**LOOP_EXFAT, "DEVNAME": f"/dev/loop{n}", "MINOR": str(n),
                                  "DISKSEQ": str(40 + n)})
    assert q.waiting() == 3
    assert [q.take(0).devnode for _ in range(3)] == [f"/dev/loop{n}" for n in range(3)]


def test_mounted_devices_and_other_actions_are_left_alone() -> None:
    q = _queue(mounted={(8, 2)})
    assert not q.offer("add", SATA_ROOT), "the vault's own disk is mounted"
    assert not q.offer("bind", LOOP_EXFAT) and not q.offer("move", LOOP_EXFAT)
    assert not q.offer("add", {k: v for k, v in LOOP_EXFAT.items() if k != "DEVNAME"})
    assert q.waiting() == 0
    assert _queue("usb").offer("add", USB_PARTITION)
    assert not _queue("usb").offer("add", SD_CARD)


def test_a_stick_pulled_while_queued_leaves_the_queue(caplog) -> None:
    q = _queue()
    assert q.offer("change", LOOP_EXFAT) and q.waiting() == 1
    assert not q.offer("change", LOOP_DETACHED)  # losetup -d while it waits its turn
    assert q.waiting() == 0 and "went away before its turn" in caplog.text
    usb = _queue("usb")
    assert usb.offer("add", USB_PARTITION) and not usb.offer("remove", USB_PARTITION)
    assert usb.take(0) is None


def test_another_insertion_on_the_node_replaces_the_queued_one() -> None:
    """Even when the event of the pull was missed, or the newcomer is not taken."""
    q = _queue()
    assert q.offer("change", LOOP_EXFAT)
    newcomer = {**LOOP_EXFAT, "DISKSEQ": "14", "ID_FS_LABEL": "OTHER", "ID_FS_UUID": "1-2"}
    assert q.offer("change", newcomer)
    assert [d.label for d in q.queued()] == ["OTHER"]
    labelled = _queue("ID_FS_LABEL=CV*")
    assert labelled.offer("change", {**LOOP_EXFAT, "ID_FS_LABEL": "CVA"})
    assert not labelled.offer("change", newcomer) and labelled.waiting() == 0


def test_the_medium_is_checked_by_more_than_its_device_number() -> None:
    queued = Device.from_properties(LOOP_EXFAT)
    assert queued.differs_from(LOOP_EXFAT) is None
    assert "no file system" in queued.differs_from(LOOP_DETACHED)
    for key, value in (("DISKSEQ", "14"), ("ID_FS_UUID", "0000-0000"),
                       ("ID_FS_LABEL", "OTHER"), ("ID_FS_TYPE", "vfat")):
        assert "another medium" in queued.differs_from({**LOOP_EXFAT, key: value}), key


def test_a_device_the_match_does_not_take_is_said_once(caplog) -> None:
    """An SD card on a vault set to USB: one line saying why, not silence."""
    caplog.set_level("INFO", logger="vault.udevwatch")
    q = _queue("usb", mounted={(8, 2)})
    assert not q.offer("add", SD_CARD) and not q.offer("change", SD_CARD)
    said = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(said) == 1 and "/dev/mmcblk0p1" in said[0] and "device_match = 'usb'" in said[0]
    assert not q.offer("add", SATA_ROOT)  # the vault's own, mounted disk: nothing said
    assert len([r for r in caplog.records if "ignoring" in r.getMessage()]) == 1
    assert not q.offer("remove", SD_CARD) and not q.offer("add", SD_CARD)
    assert len([r for r in caplog.records if "ignoring" in r.getMessage()]) == 2
