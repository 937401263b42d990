"""``chatvault vault daemon``: removable media in, receipts out, "safe to remove".

The long-running service of the offline vault. It listens to udev
(:mod:`vault.udevwatch`) and handles one medium at a time, in the order
they arrived; sticks inserted together wait their turn. For each:

1. mount read-only (:mod:`vault.mounting`: nosuid, nodev, noexec, checked);
2. copy the bundles to ``H/staging/`` while hashing (:mod:`vault.staging`);
3. unmount: the stick is not mounted while bundles are verified and stored,
   so pulling it then costs nothing;
4. ingest the staged copies (:mod:`vault.ingest`; one transaction each);
5. mount read-write, write one signed receipt per bundle, remove ingested
   bundles when ``[daemon] delete_ingested``, answer signed requests
   (``vault.requests.answer_media``, when that module is installed);
6. sync, unmount, flush the device, and log ``safe to remove <label>``.

A stick pulled at any step loses nothing: what was fully staged is
ingested, everything else stays on the stick, and the next insertion
finishes the job (a bundle already held gets a "duplicate" receipt). Any
failure is logged and the daemon goes on with the next medium. Bundles left
in staging by a crash are ingested at start.

Logging (stderr, :mod:`vault.daemonlog`; the journal keeps it, with
priorities when ``$JOURNAL_STREAM`` says stderr is the journal): INFO for
what happened to each medium and bundle, WARNING for what an operator
should look at (quarantined bundles, write-protected sticks), ERROR for
what needs action (a stick pulled too early, a mount that would not go
away). Set ``CHATVAULT_LOG=DEBUG`` for detail. Labels, file names, counts and codes
only: never record content.

systemd learns READY, STATUS and STOPPING (:mod:`vault.sdnotify`). SIGTERM
and SIGINT stop the daemon after the bundle in hand: the file being copied
is copied to the end (a bundle can be large, but one is bounded by
``limits.max_plaintext_bytes``), the bundle being ingested is committed, and
no further bundle is copied or ingested. The stick is not mounted again:
what was ingested gets its receipts when the stick is inserted again (as
"duplicate", which acknowledges it the same way; copies of the receipts
given are in ``H/receipts/``), what was staged is ingested at the next
start, and sticks still waiting are read at the next start if still there.
The daemon opens no network socket; the systemd unit makes sure of it.
"""

from __future__ import annotations

import errno
import importlib
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from vault import atomic, daemonlog, ingest, ingestlock, media, mounting, receiptdelivery
from vault import staging, udevwatch, vaultconfig
from vault.errors import (ChatvaultError, ConfigError, MediaError, MediaFull, MediaMissing,
                          MediaReadOnly, UsageError)
from vault.home import Home
from vault.sdnotify import Notifier
from vault.udevwatch import Device, DeviceMatch, DeviceQueue, Watcher

log = logging.getLogger(__name__)

REQUEST_SUFFIX = ".request.json"


@dataclass(frozen=True)
class Settings:
    home: Path
    match: DeviceMatch
    mount_root: Path
    delete_ingested: bool
    max_plaintext: int


def settings(home: Path, device_match: str | None = None) -> Settings:
    """The daemon's settings from the vault's config (``--device-match`` wins)."""
    h = Home(Path(home)).require()
    if h.kind() != "vault":
        kind = h.kind()
        raise UsageError(f"{h.path} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} home; "
                         "the daemon runs on a vault home")
    cfg = vaultconfig.load(h.path)
    try:
        match = DeviceMatch.parse(device_match if device_match is not None
                                  else cfg.device_match)
    except ValueError as exc:
        if device_match is not None:
            raise UsageError(f"--device-match: {exc}") from None
        raise ConfigError(f"key 'daemon.device_match': {exc}", path=cfg.path) from None
    return Settings(h.path, match, cfg.mount_root, cfg.delete_ingested,
                    cfg.max_plaintext_bytes)


def run(home: Path, device_match: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    restore = daemonlog.configure()
    try:
        conf = settings(home, device_match)
        with ingestlock.only_daemon(conf.home):
            Daemon(conf).serve()
    finally:
        restore()


class Daemon:
    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self.notifier = Notifier.from_environment()
        self.queue = DeviceQueue(conf.match)
        self.stop = threading.Event()
        self.handled = 0

    def serve(self) -> None:
        old = {sig: signal.signal(sig, self._on_signal)
               for sig in (signal.SIGTERM, signal.SIGINT)}
        watcher: Watcher | None = None
        try:
            mounting.ensure_root(self.conf.mount_root)
            released = mounting.release_stale(self.conf.mount_root)
            watcher = Watcher(self.queue)
            found = watcher.start()
            log.info("watching for media (match %r, mount root %s); %d already attached%s",
                     self.conf.match.text, self.conf.mount_root, found,
                     f"; released {released} stale mount(s)" if released else "")
            self.notifier.ready(f"waiting for media (match {self.conf.match.text})")
            self._finish_staged()
            while not self.stop.is_set():
                if not watcher.alive():
                    raise ChatvaultError(f"udev monitor stopped: {watcher.error}")
                device = self.queue.take(timeout=0.5)
                if device is not None and not self.stop.is_set():
                    self._handle_safely(device)
        finally:
            self.notifier.stopping()
            if watcher is not None:
                watcher.stop()
            waiting = self.queue.queued()
            if waiting:
                log.info("stopping: %d stick(s) not read (%s); each is read at the next "
                         "start if still attached", len(waiting),
                         ", ".join(d.name for d in waiting))
            for sig, handler in old.items():
                signal.signal(sig, handler)
            log.info("stopped; %d insertion(s) handled", self.handled)
            self.notifier.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping after the bundle in hand",
                 signal.Signals(signum).name)
        self.stop.set()

    def _finish_staged(self) -> None:
        """Ingest bundles a crash left in staging (their media get receipts later)."""
        with ingestlock.held(self.conf.home):
            left = staging.pending(self.conf.home)
            if not left:
                return
            log.info("ingesting %d bundle(s) left in staging by an interrupted run", len(left))
            self.notifier.status(f"ingesting {len(left)} bundle(s) left in staging")
            try:
                _log_outcomes("staging", ingest.ingest_staged(self.conf.home, left,
                                                              stop=self.stop.is_set))
            except ChatvaultError as exc:
                log.error("bundles left in staging not ingested: %s", exc)

    def _handle_safely(self, device: Device) -> None:
        self.notifier.status(f"reading {device.name}")
        try:
            self.handle(device)
        except ChatvaultError as exc:
            again = "; insert it again to finish" if isinstance(exc, MediaMissing) else ""
            log.error("%s: %s [%s]%s", device.name, exc, exc.code, again)
        except Exception:  # noqa: BLE001 - one bad medium must not stop the vault
            log.exception("%s: internal error; insert it again to retry", device.name)
        self.handled += 1
        waiting = self.queue.waiting()
        self.notifier.status(f"waiting for media ({self.handled} handled"
                             f"{f', {waiting} queued' if waiting else ''})")

    def handle(self, device: Device) -> None:
        """Everything one medium goes through (see the module docstring)."""
        with ingestlock.held(self.conf.home):  # no by-hand ingest takes what we staged
            changed = udevwatch.medium_changed(device)
            if changed is not None:  # pulled while queued; another may be there now
                log.warning("%s went away before its turn (%s): not read",
                            device.describe(), changed)
                return
            log.info("reading %s", device.describe())
            staged, has_requests, problem = self._read(device)
            if self.stop.is_set() and problem is None:
                log.info("stopping: %d bundle(s) staged from %s are ingested at the next "
                         "start; its receipts are written when it is inserted again; safe "
                         "to remove %s", _copies(staged), device.name, device.name)
                return
            outcomes = []
            if staged:
                self.notifier.status(f"ingesting {len(staged)} bundle(s) from {device.name}")
                outcomes = ingest.ingest_staged(self.conf.home, staged,
                                                media_label=device.label,
                                                media_serial=device.serial,
                                                stop=self.stop.is_set)
                _log_outcomes(device.name, outcomes)
        if problem is not None:
            return  # logged by _read; receipts come with the next insertion
        if self.stop.is_set():
            log.info("stopping: %d of %d bundle(s) from %s ingested, %d left in staging for "
                     "the next start; its receipts are written when it is inserted again "
                     "(copies in %s); safe to remove %s", len(outcomes), len(staged),
                     device.name, _copies(staged[len(outcomes):]),
                     self.conf.home / "receipts", device.name)
            return
        if not (outcomes or has_requests):
            log.info("safe to remove %s", device.name)
            return
        self._write_back(device, outcomes, has_requests)

    def _read(self, device: Device) -> tuple[list[staging.Staged], bool, MediaError | None]:
        """Mount read-only, stage the bundles, note requests, unmount.

        Returns what was fully staged even when the medium went away (or would
        not unmount), with that problem, already logged.
        """
        target = mounting.mount_point(self.conf.mount_root, device.name)
        try:
            mounted = mounting.mount(device.devnode, device.fs_type, target, readonly=True,
                                     devnum=device.devnum)
        except MediaError:
            _remove_dir(target)
            raise
        staged: list[staging.Staged] = []
        problem = None
        has_requests = False
        try:
            if not (target / media.ROOT).is_dir():
                log.info("%s has no %s folder: nothing to do", device.name, media.ROOT)
            else:
                try:
                    staged = staging.stage_from_media(self.conf.home, target,
                                                      max_plaintext=self.conf.max_plaintext,
                                                      stop=self.stop.is_set)
                except MediaError as exc:
                    staged, problem = list(getattr(exc, "staged", [])), exc
                    what = ("went away while being read" if isinstance(exc, MediaMissing)
                            else "could not be read to the end")
                    log.error("%s %s (%s): %d bundle(s) taken, the rest stay on it; insert "
                              "it again to finish", device.name, what, exc, len(staged))
                except OSError as exc:  # a listing the media layer did not expect to fail
                    raise _read_error(exc, target) from exc
                has_requests = problem is None and _has_requests(target)
        finally:
            try:
                mounting.unmount(mounted)
            except MediaError as exc:
                if problem is None:
                    log.error("%s: %s; do NOT remove it yet", device.name, exc.detail)
                    problem = exc
        return staged, has_requests, problem

    def _write_back(self, device: Device, outcomes: list[ingest.Outcome],
                    has_requests: bool) -> None:
        """Mount read-write: receipts, deletions, answers; sync; unmount."""
        self.notifier.status(f"writing receipts to {device.name}")
        gone = udevwatch.medium_changed(device)
        if gone is not None:
            self._gone_before_receipts(device, gone)
            return
        target = mounting.mount_point(self.conf.mount_root, device.name)
        try:
            mounted = mounting.mount(device.devnode, device.fs_type, target, readonly=False,
                                     devnum=device.devnum)
        except MediaReadOnly as exc:
            _remove_dir(target)
            self._write_protected(device, exc, has_requests)
            return
        except MediaError:
            _remove_dir(target)
            # a mount that fails on a vanished device says so in its own words
            # ("failed to get size of '/dev/loop0'"): ask again what is there
            gone = udevwatch.medium_changed(device)
            if gone is None:
                raise
            self._gone_before_receipts(device, gone)
            return
        try:
            refused = self._deliver(device, target, outcomes, has_requests)
            if not isinstance(refused, MediaReadOnly):
                mounting.sync(mounted)
        finally:
            mounting.unmount(mounted)
        if isinstance(refused, MediaReadOnly):
            self._write_protected(device, refused, has_requests)
        elif refused is not None:
            self._full(device, refused)
        else:
            log.info("safe to remove %s", device.name)

    def _deliver(self, device: Device, target: Path, outcomes: list[ingest.Outcome],
                 has_requests: bool) -> MediaReadOnly | MediaFull | None:
        """Receipts, then answers; a medium that takes no more writes is returned.

        A full or read-only stick is still unmounted cleanly by the caller, so
        the operator must hear that it is safe to remove; any other media
        error (pulled, I/O) is raised.
        """
        try:
            written = receiptdelivery.deliver(target, outcomes,
                                              delete_ingested=self.conf.delete_ingested)
        except (MediaReadOnly, MediaFull) as exc:  # read-only: a driver that said nothing
            return exc
        log.info("%s: %d receipt(s) written", device.name, len(written))
        if has_requests:
            try:
                _answer_requests(self.conf.home, target, device.name)
            except MediaFull as exc:
                return exc
        return None

    def _write_protected(self, device: Device, exc: MediaError, has_requests: bool) -> None:
        unanswered = ("; the requests on it were not answered (an answer needs a writable "
                      "stick): insert it writable" if has_requests else "")
        log.warning("%s is write-protected (%s): no receipts written (copies are in "
                    "%s)%s; safe to remove %s", device.name, exc.detail,
                    self.conf.home / "receipts", unanswered, device.name)

    def _full(self, device: Device, exc: MediaFull) -> None:
        log.error("%s: %s [%s]: what was not written is written when it is inserted again "
                  "with room (receipts are kept in %s); safe to remove %s", device.name, exc,
                  exc.code, self.conf.home / "receipts", device.name)

    def _gone_before_receipts(self, device: Device, why: str) -> None:
        """The stick left between reading and writing back; the next insertion writes.

        Its bundles are held by then, so they are recognised without being
        copied and get signed "duplicate" receipts, which acknowledge a
        bundle as "ingested" ones do.
        """
        log.error("%s went away before its receipts were written (%s): insert it again to "
                  "get them (copies are in %s)", device.name, why,
                  self.conf.home / "receipts")


def _copies(staged: list[staging.Staged]) -> int:
    """How many of ``staged`` are copies in staging (the others were never copied)."""
    return sum(1 for s in staged if s.kind == staging.COPY)


def _read_error(exc: OSError, target: Path) -> MediaError:
    where = exc.filename or target
    if exc.errno in (errno.EACCES, errno.EPERM):
        return MediaError(f"files on the medium cannot be read ({exc.strerror})", path=where)
    return atomic.media_error(exc, where)


def _has_requests(target: Path) -> bool:
    folder = target / media.ROOT / media.REQUESTS
    return bool(media.safe_files(folder, REQUEST_SUFFIX, 1024 * 1024))


def _answer_requests(home: Path, target: Path, name: str) -> None:
    """Call ``vault.requests.answer_media`` when that module exists."""
    try:
        requests = importlib.import_module("vault.requests")
    except ModuleNotFoundError as exc:
        if exc.name != "vault.requests":
            raise
        log.warning("%s carries requests, but this vault cannot answer them yet", name)
        return
    try:
        requests.answer_media(home, target)
    except MediaError:
        raise
    except ChatvaultError as exc:
        log.error("%s: requests not answered: %s (%s)", name, exc, exc.code)


def _log_outcomes(name: str, outcomes: list[ingest.Outcome]) -> None:
    """One line per medium (ingest itself logs each bundle and every quarantine)."""
    tally: dict[str, int] = {}
    erased = 0
    for out in outcomes:
        tally[out.status] = tally.get(out.status, 0) + 1
        if out.status == "ingested":
            erased += out.counts.get("tombstoned", 0)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(tally.items()))
    if erased:
        parts += f"; {erased} conversation(s) left out (erased)"
    level = logging.WARNING if "quarantined" in tally else logging.INFO
    log.log(level, "%s: %d bundle(s): %s", name, len(outcomes), parts or "none")


def _remove_dir(target: Path) -> None:
    try:
        target.rmdir()
    except OSError:
        pass
