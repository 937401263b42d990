"""Atomic file writes: a file is either absent or complete, never half-written.

The recipe, for local disks and removable media alike: write under a
temporary name in the same folder, ``fsync`` the file, ``rename`` it over the
final name, ``fsync`` the folder. A crash or a pulled stick at any point
leaves at most a temporary file (``.name.tmp-XXXX``), which readers ignore and
the next writer removes.

OS errors are mapped to media errors (exit 5) with the bytes needed when the
disk is full, so every caller reports the same way.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Callable

from vault.errors import MediaError, MediaFull, MediaIOError, MediaMissing, MediaReadOnly

TMP_MARK = ".tmp-"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def media_error(exc: OSError, path: Path | str, needed: int | None = None) -> MediaError:
    """The media error an OSError means, naming the path."""
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        need = f"; {needed} bytes needed" if needed else ""
        return MediaFull(f"no space left on device{need}", path=path)
    if code == errno.EROFS:
        return MediaReadOnly("file system is read-only", path=path)
    if code == errno.ENOENT:
        return MediaMissing("not found (no such file or folder)", path=path)
    if code in (errno.ENODEV, errno.ENXIO, errno.ENOTCONN, errno.ESTALE, errno.EIO):
        return MediaMissing(f"device gone ({exc.strerror}); was the media removed?",
                            path=path)
    if code in (errno.EACCES, errno.EPERM):
        return MediaReadOnly(f"not writable ({exc.strerror})", path=path)
    return MediaIOError(f"I/O error: {exc.strerror or exc}", path=path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some FUSE file systems do not implement fsync on folders.
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class AtomicFile:
    """``with AtomicFile(path) as fh: fh.write(...)``: commit on success only.

    ``fault`` is a hook for tests: called with a step name ("written",
    "synced", "renamed") so a crash can be injected at each step.
    """

    def __init__(self, path: Path | str, mode: int = 0o644,
                 fault: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.mode = mode
        self.fault = fault or (lambda step: None)
        self._fh: IO[bytes] | None = None
        self._tmp: str | None = None

    def __enter__(self) -> IO[bytes]:
        try:
            fd, self._tmp = tempfile.mkstemp(dir=self.path.parent,
                                             prefix=f".{self.path.name}{TMP_MARK}")
            os.fchmod(fd, self.mode)
        except OSError as exc:
            raise media_error(exc, self.path) from exc
        self._fh = os.fdopen(fd, "wb")
        return self._fh

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._fh is not None and self._tmp is not None
        if etype is not None:
            self._discard()
            if isinstance(exc, OSError):
                raise media_error(exc, self.path) from exc
            return
        try:
            self.fault("written")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self.fault("synced")
            os.replace(self._tmp, self.path)
            self.fault("renamed")
            fsync_dir(self.path.parent)
        except OSError as err:
            self._discard()
            raise media_error(err, self.path) from err
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        assert self._fh is not None and self._tmp is not None
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass


def write_bytes(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    with AtomicFile(path, mode) as fh:
        try:
            fh.write(data)
        except OSError as exc:
            raise media_error(exc, path, len(data)) from exc


def remove_stale_temporaries(folder: Path) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder``."""
    removed = 0
    if not folder.is_dir():
        return 0
    for item in folder.iterdir():
        if is_temporary(item.name) and item.is_file() and not item.is_symlink():
            try:
                item.unlink()
                removed += 1
            except OSError:
                pass
    return removed
