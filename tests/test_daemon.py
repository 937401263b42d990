"""The daemon: what it does with one medium, what it tells systemd, what it never opens.

The flow tests swap the mounting layer for a folder standing for the stick
(``vault_kit.stick``) and record each mount, sync and unmount, so that the
order of steps and every failure path can be checked in isolation; staging,
ingest and receipts are the real ones. Real mounting and udev are covered by
``test_mounting.py`` and ``test_media_e2e.py``.

The process tests start ``python -m vault vault daemon`` for real, with a
notify socket of our own and an audit hook that ends the process if an IP
socket is ever created.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

import media_kit as mk
from conftest import REPO, Pair
from vault import daemon, ingest, ingestbundle, mounting, receipts, sdnotify, staging, udevwatch
from vault.errors import MediaFull, MediaMissing, MediaReadOnly, PolicyRefused
from vault.udevwatch import Device
from vault_kit import Chain, conv, open_store, outbox, stick

LOOP = {"SUBSYSTEM": "block", "DEVNAME": "/dev/loop9", "DEVTYPE": "disk", "DISKSEQ": "77",
        "MAJOR": "7", "MINOR": "9", "ID_FS_TYPE": "exfat", "ID_FS_USAGE": "filesystem",
        "ID_FS_LABEL": "CVFLOW", "ID_FS_UUID": "1234-ABCD"}


class FakeMedia:
    """Stands in for vault.mounting: 'mounts' a folder and records every step."""

    def __init__(self, folder: Path, read_only_medium: bool = False) -> None:
        self.folder = folder
        self.read_only_medium = read_only_medium
        self.steps: list[str] = []
        self.mounted = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> "FakeMedia":
        monkeypatch.setattr(mounting, "mount_point", lambda root, name: self.folder)
        monkeypatch.setattr(mounting, "mount", self.mount)
        monkeypatch.setattr(mounting, "unmount", self.unmount)
        monkeypatch.setattr(mounting, "sync", lambda m: self.steps.append("sync"))
        monkeypatch.setattr(udevwatch, "medium_changed", lambda device: None)
        return self

    def mount(self, devnode: str, fs_type: str, target: Path, *, readonly: bool,
              devnum: tuple[int, int] | None = None) -> mounting.Mounted:
        assert (devnode, fs_type, devnum) == ("/dev/loop9", "exfat", (7, 9))
        if not readonly and self.read_only_medium:
            raise MediaReadOnly("the medium is write-protected", path=devnode)
        self.steps.append("mount ro" if readonly else "mount rw")
        self.mounted = True
        plan = mounting.plan(fs_type, readonly=readonly, kernel=set(), fuse_helper="x")
        return mounting.Mounted(devnode, target, plan)

    def unmount(self, mounted: mounting.Mounted, *, remove_dir: bool = True) -> None:
        self.steps.append("unmount")
        self.mounted = False


def _daemon(pair: Pair, delete_ingested: bool = False) -> daemon.Daemon:
    conf = daemon.settings(pair.vault_path)
    return daemon.Daemon(daemon.Settings(conf.home, conf.match, pair.root / "mnt",
                                         delete_ingested, conf.max_plaintext))


def _stick_with(pair: Pair, n: int) -> tuple[Path, list]:
    media = stick(pair.root / "stick")
    chain = Chain(pair, outbox(media))
    return media, [chain.seal([conv(f"c{i}", ["hello"])]) for i in range(n)]


def _stored(pair: Pair) -> set[str]:
    return {r[0] for r in open_store(pair).execute("SELECT conversation_id FROM conversations")}


def _receipts(pair: Pair, media: Path) -> dict[str, str]:
    trust = pair.exporter.trust()
    return {r.body["bundle_file"]: r.status
            for r in (receipts.verify_file(p, trust) for p in receipts.on_media(media))}


def test_read_unmount_ingest_then_write_back(pair: Pair, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    media, sealed = _stick_with(pair, 2)
    fake = FakeMedia(media).install(monkeypatch)
    real_ingest = ingest.ingest_staged

    def ingest_unmounted(*args, **kw):
        assert not fake.mounted, "the stick must not be mounted while ingesting"
        assert kw["media_label"] == "CVFLOW"
        return real_ingest(*args, **kw)

    monkeypatch.setattr(ingest, "ingest_staged", ingest_unmounted)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))

    assert fake.steps == ["mount ro", "unmount", "mount rw", "sync", "unmount"]
    assert _receipts(pair, media) == {s.path.name: "ingested" for s in sealed}
    assert _stored(pair) == {"c0", "c1"}
    assert len(list(outbox(media).iterdir())) == 2
    assert caplog.messages[-1] == "safe to remove CVFLOW"


def test_delete_ingested_removes_bundles_after_their_receipt(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    media, sealed = _stick_with(pair, 2)
    FakeMedia(media).install(monkeypatch)
    _daemon(pair, delete_ingested=True).handle(Device.from_properties(LOOP))
    assert list(outbox(media).iterdir()) == []
    assert set(_receipts(pair, media)) == {s.path.name for s in sealed}


@pytest.mark.parametrize("error,said", [(MediaMissing, "went away while being read"),
                                        (MediaFull, "could not be read to the end")])
def test_pulled_while_staging_keeps_what_was_staged(pair: Pair,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture,
                                                    error: type, said: str) -> None:
    media, sealed = _stick_with(pair, 3)
    fake = FakeMedia(media).install(monkeypatch)

    def stage_then_vanish(home, root, **kw):
        done = staging.stage_files(home, [sealed[0].path])
        exc = error("stopped while reading", path=sealed[1].path)
        exc.staged = done  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(staging, "stage_from_media", stage_then_vanish)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))

    assert fake.steps == ["mount ro", "unmount"], "no write-back to a vanished stick"
    assert _stored(pair) == {"c0"}
    assert receipts.on_media(media) == []
    assert any(said in m and "insert it again" in m for m in caplog.messages)
    assert not any("safe to remove" in m for m in caplog.messages)


def test_write_protected_stick_keeps_receipts_at_home(pair: Pair,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    media, sealed = _stick_with(pair, 1)
    fake = FakeMedia(media, read_only_medium=True).install(monkeypatch)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount"]
    assert receipts.on_media(media) == []
    assert len(list((pair.vault_path / "receipts").glob("*.receipt.json"))) == 1
    assert "write-protected" in caplog.text and "safe to remove CVFLOW" in caplog.text


def test_full_stick_is_unmounted_and_said_safe_to_remove(pair: Pair,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """No room for receipts: the stick is unmounted all the same and the operator told so."""
    media, sealed = _stick_with(pair, 1)
    fake = FakeMedia(media).install(monkeypatch)

    def no_room(*args, **kw):
        raise MediaFull("1,024 bytes needed, 0 free", path=media / "chatvault" / "receipts")

    monkeypatch.setattr(daemon.receiptdelivery, "deliver", no_room)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount", "mount rw", "sync", "unmount"]
    assert _stored(pair) == {"c0"}
    assert len(list((pair.vault_path / "receipts").glob("*.receipt.json"))) == 1
    last = caplog.messages[-1]
    assert "media_full" in last and last.endswith("safe to remove CVFLOW")


def test_stick_without_chatvault_folder_is_only_read(pair: Pair,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    media = pair.root / "holiday-photos"
    media.mkdir()
    fake = FakeMedia(media).install(monkeypatch)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount"]
    assert "nothing to do" in caplog.text and "safe to remove CVFLOW" in caplog.text
    assert list(media.iterdir()) == []


def _with_request(media: Path) -> None:
    folder = media / "chatvault" / "requests"
    folder.mkdir(parents=True)
    (folder / "dsar-1.request.json").write_text("{}")


def test_requests_are_answered_while_mounted_read_write(pair: Pair,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    media = stick(pair.root / "stick")
    _with_request(media)
    fake = FakeMedia(media).install(monkeypatch)
    calls = []
    hook = types.ModuleType("vault.requests")
    hook.answer_media = lambda home, target: calls.append((home, target, list(fake.steps)))
    monkeypatch.setitem(sys.modules, "vault.requests", hook)
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert calls == [(pair.vault_path, media, ["mount ro", "unmount", "mount rw"])]
    assert fake.steps[-2:] == ["sync", "unmount"]


def test_write_protected_stick_with_requests_says_they_wait(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    media = stick(pair.root / "stick")
    _with_request(media)
    FakeMedia(media, read_only_medium=True).install(monkeypatch)
    calls: list[Path] = []
    hook = types.ModuleType("vault.requests")
    hook.answer_media = lambda home, target: calls.append(target)
    monkeypatch.setitem(sys.modules, "vault.requests", hook)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert calls == []
    last = caplog.messages[-1]
    assert "requests on it were not answered" in last and last.endswith("safe to remove CVFLOW")


def test_a_failing_request_hook_still_leaves_the_stick_safe(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    media = stick(pair.root / "stick")
    _with_request(media)
    fake = FakeMedia(media).install(monkeypatch)
    hook = types.ModuleType("vault.requests")

    def refuse(home: Path, target: Path) -> None:
        raise PolicyRefused("request signed by an unknown key")

    hook.answer_media = refuse
    monkeypatch.setitem(sys.modules, "vault.requests", hook)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount", "mount rw", "sync", "unmount"]
    assert "requests not answered" in caplog.text and "safe to remove CVFLOW" in caplog.text


def test_requests_without_the_requests_module_are_reported(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    media = stick(pair.root / "stick")
    _with_request(media)
    FakeMedia(media).install(monkeypatch)
    monkeypatch.setitem(sys.modules, "vault.requests", None)  # as if not installed
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    assert "cannot answer them yet" in caplog.text


def test_one_bad_medium_does_not_stop_the_daemon(pair: Pair, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    media, _ = _stick_with(pair, 1)
    fake = FakeMedia(media).install(monkeypatch)

    def broken(*args, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "ingest_staged", broken)
    d = _daemon(pair)
    d._handle_safely(Device.from_properties(LOOP))  # must not raise
    assert d.handled == 1 and "internal error" in caplog.text
    assert not fake.mounted
    monkeypatch.setattr(staging, "stage_from_media",
                        lambda *a, **k: (_ for _ in ()).throw(MediaMissing("gone")))
    d._handle_safely(Device.from_properties(LOOP))
    assert d.handled == 2 and "insert it again to finish" in caplog.text


def test_bundles_left_in_staging_are_ingested_at_start(pair: Pair) -> None:
    media, sealed = _stick_with(pair, 2)
    staging.stage_files(pair.vault_path, [s.path for s in sealed])
    _daemon(pair)._finish_staged()
    assert _stored(pair) == {"c0", "c1"}
    assert staging.pending(pair.vault_path) == []


def test_stop_requested_while_reading_leaves_ingest_to_the_next_start(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM during a copy: that copy ends, no further bundle is copied nor ingested."""
    media, sealed = _stick_with(pair, 3)
    fake = FakeMedia(media).install(monkeypatch)
    d = _daemon(pair)
    real_stage_one = staging._stage_one

    def stage_during_sigterm(*args, **kw):
        d.stop.set()  # as the SIGTERM handler does, while the first copy is made
        return real_stage_one(*args, **kw)

    monkeypatch.setattr(staging, "_stage_one", stage_during_sigterm)
    caplog.set_level(logging.INFO, "vault")
    d.handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount"]
    assert _stored(pair) == set() and len(staging.pending(pair.vault_path)) == 1
    assert "1 bundle(s) staged from CVFLOW are ingested at the next start" in caplog.text
    assert "2 bundle file(s) not read" in caplog.text
    assert caplog.messages[-1].endswith("safe to remove CVFLOW")
    _daemon(pair)._finish_staged()
    assert _stored(pair) == {"c0"}


def test_stop_requested_while_ingesting_ingests_no_further_bundle(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    media, sealed = _stick_with(pair, 3)
    fake = FakeMedia(media).install(monkeypatch)
    d = _daemon(pair)
    real_one = ingestbundle.one

    def one_during_sigterm(*args, **kw):
        d.stop.set()  # SIGTERM while the first bundle is ingested
        return real_one(*args, **kw)

    monkeypatch.setattr(ingestbundle, "one", one_during_sigterm)
    caplog.set_level(logging.INFO, "vault")
    d.handle(Device.from_properties(LOOP))
    assert fake.steps == ["mount ro", "unmount"], "not mounted again after the stop"
    assert _stored(pair) == {"c0"} and len(staging.pending(pair.vault_path)) == 2
    assert ("1 of 3 bundle(s) from CVFLOW ingested, 2 left in staging for the next start"
            in caplog.text)
    assert caplog.messages[-1].endswith("safe to remove CVFLOW")
    monkeypatch.setattr(ingestbundle, "one", real_one)
    _daemon(pair)._finish_staged()
    assert _stored(pair) == {"c0", "c1", "c2"}


# -- settings ---------------------------------------------------------------------------

def test_unusable_mount_root_stops_the_daemon_at_start(pair: Pair, tmp_path: Path,
                                                       cli) -> None:
    (tmp_path / "file").write_text("x")
    mk.configure(pair.vault_path, match="any", mount_root=tmp_path / "file" / "media")
    r = cli("vault", "daemon", "--home", pair.vault_path)
    assert r.code == 5 and "cannot create the mount root" in r.err

def test_bad_device_match_is_a_usage_error(pair: Pair, cli) -> None:
    r = cli("vault", "daemon", "--home", pair.vault_path, "--device-match", "bus=usb")
    assert r.code == 2 and "--device-match" in r.err


def test_bad_device_match_in_config_names_the_key(pair: Pair, cli) -> None:
    cfg = pair.vault_path / "config.toml"
    cfg.write_text(cfg.read_text().replace('device_match = "usb"', 'device_match = "ID_X="'))
    r = cli("vault", "daemon", "--home", pair.vault_path)
    assert r.code == 2 and "daemon.device_match" in r.err and "config.toml" in r.err


def test_daemon_refuses_an_exporter_home(pair: Pair, cli) -> None:
    r = cli("vault", "daemon", "--home", pair.exporter_path)
    assert r.code == 2 and "exporter home" in r.err


# -- the process: systemd notify, signals, no network -----------------------------------

def _notify_socket(tmp_path: Path, abstract: bool) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"chatvault-test-{os.getpid()}-{tmp_path.name}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    sock.settimeout(60)
    return sock, address


def _messages(sock: socket.socket, until: str) -> list[str]:
    got = []
    while not any(until in m for m in got):
        got.append(sock.recv(4096).decode())
    return got


@pytest.mark.parametrize("abstract", [True, False])
def test_daemon_tells_systemd_ready_and_stopping(pair: Pair, tmp_path: Path,
                                                 abstract: bool) -> None:
    sock, address = _notify_socket(tmp_path, abstract)
    mk.configure(pair.vault_path, match="ID_FS_LABEL=NEVER-SEEN-LABEL",
                 mount_root=tmp_path / "mnt")
    with sock, mk.DaemonProcess(pair.vault_path, tmp_path / "d.log",
                                env={"NOTIFY_SOCKET": address}) as d:
        ready = _messages(sock, "READY=1")[-1].splitlines()
        assert ready[0] == "READY=1" and ready[1].startswith("STATUS=waiting for media")
        d.proc.send_signal(signal.SIGTERM)
        stopping = _messages(sock, "STOPPING=1")[-1]
        assert stopping.startswith("STOPPING=1")
        assert d.proc.wait(timeout=60) == 0, d.text()
    assert "SIGTERM received" in d.text() and "NETWORK SOCKET" not in d.text()


def test_sigint_stops_cleanly_too(pair: Pair, tmp_path: Path) -> None:
    mk.configure(pair.vault_path, match="ID_FS_LABEL=NEVER-SEEN-LABEL",
                 mount_root=tmp_path / "mnt")
    with mk.DaemonProcess(pair.vault_path, tmp_path / "d.log") as d:
        d.wait_for("watching for media")
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(timeout=60) == 0, d.text()
    assert re.search(r"stopped; 0 insertion\(s\) handled", d.text())


def test_a_second_daemon_on_the_home_is_refused(pair: Pair, tmp_path: Path, proc) -> None:
    """Started by hand beside the service, it would unmount the first one's sticks."""
    mk.configure(pair.vault_path, match="ID_FS_LABEL=NEVER-SEEN-LABEL",
                 mount_root=tmp_path / "mnt")
    with mk.DaemonProcess(pair.vault_path, tmp_path / "d.log") as d:
        d.wait_for("watching for media")
        second = proc("vault", "daemon", "--home", pair.vault_path, timeout=60)
        assert second.code == 4, second.err
        assert "a vault daemon is running on this home already" in second.err
        assert d.proc.poll() is None, "the first one goes on"
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=60) == 0, d.text()
    with mk.DaemonProcess(pair.vault_path, tmp_path / "d2.log") as d2:  # the lock went
        d2.wait_for("watching for media")
        d2.proc.send_signal(signal.SIGTERM)
        assert d2.proc.wait(timeout=60) == 0, d2.text()


def test_no_network_guard_would_catch_a_socket() -> None:
    """The audit-hook guard the daemon processes run under does stop an IP socket."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for control, code in (("1", 86), ("0", 0)):
        done = subprocess.run([sys.executable, "-c", mk.NO_NETWORK, "--help"],
                              env={**env, "MEDIA_KIT_CONTROL": control},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == code, done.stderr
        assert ("NETWORK SOCKET CREATED" in done.stderr) == (code == 86)


def test_daemon_code_names_no_ip_socket() -> None:
    for name in ("daemon", "daemonlog", "mounting", "mountplan", "udevwatch", "sdnotify",
                 "staging", "ingest", "ingestbundle"):
        text = (REPO / "vault" / f"{name}.py").read_text()
        assert "AF_INET" not in text and "create_connection" not in text, name


# -- sdnotify ---------------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [True, False])
def test_notifier_sends_one_datagram_per_call(tmp_path: Path, abstract: bool) -> None:
    sock, address = _notify_socket(tmp_path, abstract)
    with sock:
        n = sdnotify.Notifier(address)
        assert n.ready("waiting\nfor   media")
        assert n.status("x" * 500)
        assert n.stopping()
        n.close()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got[0] == "READY=1\nSTATUS=waiting for media", "one line, spaces folded"
    assert got[1] == "STATUS=" + "x" * sdnotify.MAX_STATUS
    assert got[2] == "STOPPING=1\nSTATUS=stopping"


def test_notifier_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = sdnotify.Notifier.from_environment()
    assert not n.enabled and not n.ready("x")
    assert not sdnotify.Notifier("relative/path").enabled
    gone = sdnotify.Notifier(str(tmp_path / "nobody-listens"))
    assert gone.enabled and not gone.status("x"), "a failed send is not an error"


def test_notify_socket_is_not_passed_on(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "s"))
    n = sdnotify.Notifier.from_environment()
    assert n.address == str(tmp_path / "s") and "NOTIFY_SOCKET" not in os.environ
    n.close()

