"""Bundles onto the stick, checked; and off it again once they are safe.

Writing (:func:`deliver`): every bundle not yet acknowledged by all its
vaults and not already on the media goes to ``<media>/chatvault/outbox/``.
Free space for all of them is checked first; a write is atomic (temporary
name, fsync, rename, fsync of the folder, :class:`vault.atomic.AtomicFile`);
the local copy is hashed while it is copied and must match the state, and the
media copy is read back (with the page cache dropped first, so the bytes come
from the device where the file system allows) and hashed. Only then does the
state say "written". A failure leaves at most a temporary file, which the next
run removes, and never a file under a bundle's name that is not complete.

"Already on the media" means a regular file of the recorded size; its content
is hashed only when the state does not yet say it was written (a run that
stopped between the rename and the state update). ``export rewrite`` writes
everything unacknowledged again regardless.

Removing (:func:`remove`): acknowledged bundles and their receipts are
deleted from the stick so that sticks do not fill up with data already safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from vault import atomic, media
from vault.errors import ChatvaultError, MediaError, MediaFull, MediaIOError, MediaMissing
from vault.exportstate import BundleRow, ExportState

log = logging.getLogger(__name__)

_BUFFER = 1024 * 1024
Fault = Callable[[str], None]


class Progress(Protocol):
    """What the exporter reports progress to (a rich bar on a terminal, or nothing)."""

    def begin(self, label: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    def begin(self, label: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass


def no_fault(step: str) -> None:
    """The default fault hook: does nothing (tests inject crashes here)."""


class LocalCopyDamaged(ChatvaultError):
    """The local outbox copy no longer matches the hash recorded when it was sealed."""

    code = "local_copy_damaged"


@dataclass
class MediaReport:
    path: str
    written: list[dict[str, Any]] = field(default_factory=list)
    already: int = 0
    waiting: int = 0
    #: what the bundles still waiting need on a stick (plus media.MARGIN)
    bytes_waiting: int = 0
    bytes_written: int = 0
    error: ChatvaultError | None = None
    #: bundles whose local copy is missing or damaged: skipped, the others still written
    unwritable: list[ChatvaultError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else 0

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "written": self.written, "already_on_media": self.already,
                "waiting": self.waiting, "bytes_waiting": self.bytes_waiting,
                "bytes_written": self.bytes_written,
                "error": self.error.as_dict() if self.error else None,
                "unwritable": [e.as_dict() for e in self.unwritable]}


def _is_regular(path: Path) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def sha256_of(path: Path, drop_cache: bool = False) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_cache:
            # Clean pages are dropped so the read-back comes from the device
            # (best effort: some FUSE file systems ignore the advice).
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while chunk := os.read(fd, _BUFFER):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def remove_stale(folder: Path, sources: Iterable[str]) -> int:
    """Remove temporaries of interrupted writes of *our* sources' bundles only.

    Another exporter may share the stick; its temporaries are not ours to judge.
    """
    prefixes = tuple(f".{name}-" for name in sources)
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if atomic.is_temporary(name) and name.startswith(prefixes):
            try:
                os.unlink(folder / name)
                removed += 1
            except OSError:
                pass
    return removed


def copy_verified(row: BundleRow, local: Path, target: Path, fault: Fault = no_fault,
                  progress: Progress | None = None) -> None:
    """Copy ``local`` to ``target`` atomically, then read it back and check its hash."""
    progress = progress or NoProgress()
    digest = hashlib.sha256()
    try:
        src = open(local, "rb")
    except OSError as exc:
        raise LocalCopyDamaged(f"cannot read the local copy ({exc.strerror})",
                               path=local) from None
    with src, atomic.AtomicFile(target, fault=lambda step: fault(f"media-{step}")) as out:
        while chunk := src.read(_BUFFER):
            digest.update(chunk)
            out.write(chunk)
            progress.advance(len(chunk))
        if digest.hexdigest() != row.sha256:
            raise LocalCopyDamaged(f"does not match the SHA-256 recorded when {row.file_name} "
                                   "was sealed; the local disk may be failing", path=local)
    fault("media-readback")
    try:
        again = sha256_of(target, drop_cache=True)
    except OSError as exc:
        raise atomic.media_error(exc, target) from exc
    if again != row.sha256:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise MediaIOError("the copy read back differs from what was written; the media "
                           "may be failing (the bundle stays in the local outbox)", path=target)


def _needs_writing(state: ExportState, row: BundleRow, target: Path, force: bool) -> bool:
    st = _is_regular(target)
    if force or st is None or st.st_size != row.size:
        return True
    if row.media_written_at is None:
        # Written by a run that stopped before saying so: check it byte for byte.
        try:
            if sha256_of(target) != row.sha256:
                return True
        except OSError:
            return True
        state.mark_written(row.sha256)
    return False


def deliver(state: ExportState, outbox: Path, media_path: Path, sources: Iterable[str], *,
            force: bool = False, fault: Fault = no_fault, progress: Progress | None = None,
            no_stick: MediaError | None = None) -> MediaReport:
    """Write every unacknowledged bundle that the media lacks; never raises media errors.

    ``no_stick``: the media folder is known to be no stick (the empty mount
    point of one not plugged in): nothing is written, the report says why.
    """
    progress = progress or NoProgress()
    report = MediaReport(str(media_path))
    pending = [r for r in state.bundles(unacknowledged=True)
               if r.local_deleted_at is None and r.abandoned_at is None]
    report.waiting = len(pending)  # until this stick is known to hold some of them
    report.bytes_waiting = sum(r.size for r in pending)
    try:
        if no_stick is not None:
            raise no_stick
        folder = media.folder(media_path, media.OUTBOX, create=True)
        for path, why in media.odd_entries(folder, ".cvb"):  # said here only, once a run
            log.warning("%s: ignored", media.describe_odd(path, why))
        remove_stale(folder, set(sources) | {r.source for r in pending})
        todo = [r for r in pending if _needs_writing(state, r, folder / r.file_name, force)]
        report.already = len(pending) - len(todo)
        report.waiting = len(todo)
        needed = report.bytes_waiting = sum(r.size for r in todo)
        if todo:
            free = media.free_bytes(folder)
            if free < needed + media.MARGIN:
                raise MediaFull(f"{len(todo)} bundle(s) need {needed} bytes (plus "
                                f"{media.MARGIN} bytes of room), {free} bytes free; nothing "
                                "was written: use a larger stick or free some space",
                                path=folder)
        if todo:
            progress.begin("writing to media", needed)
        for row in todo:
            try:
                _write_one(state, row, outbox, folder, fault, progress)
            except LocalCopyDamaged as exc:
                # this bundle's own problem: the others still go onto the stick
                _skip(report, row, exc)
                continue
            report.written.append({"file": row.file_name, "size": row.size,
                                   "sha256": row.sha256})
            report.bytes_written += row.size
            report.waiting -= 1
            report.bytes_waiting -= row.size
    except ChatvaultError as exc:
        report.error = exc
        if not isinstance(exc, MediaError):
            log.error("writing bundles to media failed: %s", exc)
        else:
            log.warning("media %s: %s", media_path, exc.detail)
    finally:
        progress.end()
    return report


def _skip(report: MediaReport, row: BundleRow, exc: LocalCopyDamaged) -> None:
    """A bundle whose local copy cannot be written: said, not counted as waiting."""
    log.error("writing bundles to media: %s", exc)
    report.unwritable.append(exc)
    report.error = report.error or exc
    report.waiting -= 1
    report.bytes_waiting -= row.size


def _write_one(state: ExportState, row: BundleRow, outbox: Path, folder: Path,
               fault: Fault, progress: Progress) -> None:
    target = folder / row.file_name
    try:
        copy_verified(row, outbox / row.file_name, target, fault, progress)
    except MediaFull as exc:
        free = media.free_bytes(folder) if folder.is_dir() else 0
        raise MediaFull(f"{exc.detail} while writing {row.file_name}: {row.size} bytes "
                        f"needed, {free} free; nothing half-written was left",
                        path=folder) from exc
    except MediaMissing as exc:
        raise MediaMissing(f"gone while writing {row.file_name} ({exc.detail}); was the "
                           "media removed? The bundle stays in the local outbox for the "
                           "next run", path=folder) from exc
    state.mark_written(row.sha256)
    fault("media-recorded")
    log.info("wrote %s to media (%d bytes, read back and verified)", row.file_name, row.size)


def remove(paths: Iterable[Path]) -> list[str]:
    """Delete files from the media (acknowledged bundles, their receipts); names removed."""
    removed: list[str] = []
    folders: set[Path] = set()
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise atomic.media_error(exc, path) from exc
        removed.append(path.name)
        folders.add(path.parent)
    for folder in folders:
        try:
            atomic.fsync_dir(folder)
        except OSError as exc:
            raise atomic.media_error(exc, folder) from exc
    return removed
