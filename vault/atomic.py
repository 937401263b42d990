"""Atomic file writes: a file is either absent or complete, never half-written.

The recipe, for local disks and removable media alike: write under a
temporary name in the same folder, ``fsync`` the file, ``rename`` it over the
final name, ``fsync`` the folder. A crash or a pulled stick at any point
leaves at most a temporary file (``.name.tmp-XXXX``), which readers ignore and
the next writer removes.

OS errors are mapped to media errors (exit 5) with the bytes needed when the
disk is full, so every caller reports the same way.

Only a regular file (or nothing) is ever replaced. A rename puts a plain
file in place of whatever the name held: ``-o /dev/null`` run as root would
turn the null device into a file of personal data, a symbolic link would be
swapped for a copy, a FIFO for a file its reader never sees. So the target
is checked with ``lstat`` before anything is written and again just before
the rename, and anything else is refused (:class:`NotRegularFile`, exit 2:
the operator named the wrong thing). The second check narrows the window
but cannot close it: whoever can create files in the folder can race it.

Files are created private (``0600``) unless a caller asks otherwise, and
:func:`private_dir` makes folders ``0700``, whatever the umask: most of
what chatvault writes is personal data or derived from it.

Small files someone gives chatvault (key files, paper backups, passphrase
files, signed documents on a stick) are read with :func:`read_small`: never
a FIFO (whose open and read wait for a writer that may never come), a device
or a folder, never more than a bound, and on request never through a link.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Callable, Iterator

from vault.errors import (ChatvaultError, InputRejected, MediaError, MediaFull, MediaIOError,
                          MediaMissing, MediaReadOnly, NotRegularFile, UsageError)

TMP_MARK = ".tmp-"
#: files and folders holding personal data: the owner only, whatever the umask
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"))


def is_temporary(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def media_error(exc: OSError, path: Path | str | None,
                needed: int | None = None) -> MediaError:
    """The media error an OSError means, naming the path (when one is known)."""
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        need = f"; {needed} bytes needed" if needed else ""
        return MediaFull(f"no space left on device{need}", path=path)
    if code == errno.EROFS:
        return MediaReadOnly("file system is read-only", path=path)
    if code == errno.ENOENT:
        if path is not None and not Path(path).parent.exists():  # the folder is missing
            return MediaMissing(f"folder not found (it was to hold {Path(path).name!r})",
                                path=Path(path).parent)
        return MediaMissing("not found (no such file or folder)", path=path)
    if code in (errno.ENODEV, errno.ENXIO, errno.ENOTCONN, errno.ESTALE, errno.EIO):
        return MediaMissing(f"device gone ({exc.strerror}); was the media removed?",
                            path=path)
    if code in (errno.EACCES, errno.EPERM):
        return MediaReadOnly(f"not writable ({exc.strerror})", path=path)
    return MediaIOError(f"I/O error: {exc.strerror or exc}", path=path)


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` is, in words ("a character device")."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "of an unknown kind"


def lstat_mode(path: Path | str) -> int | None:
    """``st_mode`` of ``path`` itself (a link is not followed), None when there is none."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise media_error(exc, path) from exc


def check_target(path: Path | str) -> None:
    """Refuse a ``path`` that exists and is not a regular file (see the module doc)."""
    mode = lstat_mode(path)
    if mode is not None and not stat.S_ISREG(mode):
        raise NotRegularFile(f"is {kind_of(mode)}, not a regular file; refusing to "
                             "replace it (name a new or regular file)", path=path)


def read_small(path: Path | str, limit: int, *, follow: bool = True,
               refuse: type[ChatvaultError] = InputRejected, pipes: bool = False) -> bytes:
    """The bytes of a small regular file; anything else is refused unread, never waited on.

    The file is looked at (``stat``, or ``lstat`` when ``follow`` is false)
    before it is opened, opened with ``O_NONBLOCK`` (and ``O_NOFOLLOW``
    without ``follow``) so that a FIFO swapped in meanwhile cannot block the
    open, and checked again on the descriptor. Anything but a regular file,
    and a file of more than ``limit`` bytes, raises ``refuse`` naming the
    file. Failures to find or read it are raised as the ``OSError`` they are:
    each caller words a missing file as its command does. ``pipes`` lets a
    pipe through too, read to its end (at most ``limit`` bytes): a passphrase
    given as ``--passphrase-file <(pass show vault)`` is one, and waiting
    for its writer is what the person asked for.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW
    st = os.stat(path) if follow else os.lstat(path)
    if pipes and stat.S_ISFIFO(st.st_mode):
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise refuse(f"larger than {limit} bytes", path=path)
        return data
    _check_small(st, path, limit, refuse)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | nofollow)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:  # made a link since the lstat
            raise refuse(f"is not a regular file but {kind_of(stat.S_IFLNK)}; nothing was "
                         "read from it", path=path) from None
        raise
    try:
        _check_small(os.fstat(fd), path, limit, refuse)
        os.set_blocking(fd, True)
        parts: list[bytes] = []
        got = 0
        while got <= limit:
            part = os.read(fd, limit + 1 - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    if got > limit:
        raise refuse(f"larger than {limit} bytes", path=path)
    return b"".join(parts)


def _check_small(st: os.stat_result, path: Path | str, limit: int,
                 refuse: type[ChatvaultError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise refuse(f"is not a regular file but {kind_of(st.st_mode)}; nothing was read "
                     "from it", path=path)
    if st.st_size > limit:
        raise refuse(f"larger than {limit} bytes", path=path)


def private_dir(path: Path | str) -> list[Path]:
    """Create ``path`` and missing parents as ``0700``; existing folders are left as they are.

    Returns the folders it made, outermost first (see :func:`output_dir`).
    """
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not os.path.lexists(p)][::-1]
    made: list[Path] = []
    try:
        for folder in missing:
            try:
                folder.mkdir(mode=PRIVATE_DIR)
            except FileExistsError:
                continue  # made by someone else meanwhile: theirs, mode included
            made.append(folder)
            os.chmod(folder, PRIVATE_DIR)  # the umask may have taken more
        mode = os.stat(path).st_mode  # a link to a folder is a folder here
    except OSError as exc:
        raise media_error(exc, path) from exc
    if not stat.S_ISDIR(mode):
        raise UsageError(f"is {kind_of(mode)}, not a folder", path=path)
    return made


@contextmanager
def output_dir(path: Path | str) -> Iterator[Path]:
    """:func:`private_dir` for a command's ``--out``, taken back if the command fails.

    A refused command leaves nothing behind: the folders made here are removed
    again, innermost first, as long as they are still empty (whatever the
    command wrote into them is removed by the command itself).
    """
    made = private_dir(path)
    try:
        yield Path(path)
    except BaseException:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): its parents are not empty either
        raise


def make_private(tree: Path) -> None:
    """Files under ``tree`` to ``0600``, folders (``tree`` too) to ``0700``; links untouched."""
    try:
        os.chmod(tree, PRIVATE_DIR)
        for root, dirs, files in os.walk(tree):
            for name in dirs:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), PRIVATE_DIR)
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), PRIVATE_FILE)
    except OSError as exc:
        raise media_error(exc, exc.filename or tree) from exc


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
    "synced", "renamed") so a crash can be injected at each step. ``mode``
    is set exactly (the umask plays no part); the default is private.
    """

    def __init__(self, path: Path | str, mode: int = PRIVATE_FILE,
                 fault: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.mode = mode
        self.fault = fault or (lambda step: None)
        self._fh: IO[bytes] | None = None
        self._tmp: str | None = None

    def __enter__(self) -> IO[bytes]:
        check_target(self.path)
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
            check_target(self.path)
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


def write_bytes(path: Path | str, data: bytes, mode: int = PRIVATE_FILE) -> None:
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
