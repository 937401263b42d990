"""One ingest at a time per vault: ``H/ingest.lock``.

The daemon and a person at the command line may both ingest. Each run holds
this lock from the moment it starts reading a medium until its bundles are
in the store, so that a second run never takes bundles the first one staged
(it would ingest them and write their receipts onto the wrong medium) and
waits for a file lock rather than for SQLite's write lock, which a large
bundle can hold for longer than any timeout.

The lock is re-entrant within a thread (a run that holds it may call code
that takes it again); another thread or process waits, and says so once.

``H/daemon.lock`` keeps a second daemon off the home (:func:`only_daemon`):
at its start it would release the first one's mounts as stale, and both
would mount the same stick.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

log = logging.getLogger("vault.ingest")

FILE_NAME = "ingest.lock"
DAEMON_LOCK = "daemon.lock"
_held = threading.local()


@contextlib.contextmanager
def held(home: Path) -> Iterator[None]:
    """Hold the vault's ingest lock (waiting for another run to finish)."""
    key = str(Path(home).resolve())
    depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    fd = os.open(Path(home) / FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another ingest is running on this vault (the daemon?); waiting for "
                        "it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
    finally:
        os.close(fd)


@contextlib.contextmanager
def only_daemon(home: Path) -> Iterator[None]:
    """Be the one daemon of ``home``; refused (exit 4) while another one runs."""
    from vault.atomic import media_error
    from vault.errors import DaemonRunning

    path = Path(home) / DAEMON_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise media_error(exc, path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonRunning("a vault daemon is running on this home already "
                                "('systemctl status chatvault-vault'); one at a time",
                                path=Path(home)) from None
        yield
    finally:
        os.close(fd)


def busy(home: Path) -> bool:
    """Whether a run holds the lock now (without waiting, creating or taking it)."""
    try:
        fd = os.open(Path(home) / FILE_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False
