"""An exclusive advisory lock on a file, held for a ``with`` block.

``flock`` locks belong to the open file: closing the descriptor releases
the lock, also when the process dies, so a crashed run never leaves a
lock behind that an operator would have to remove by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path`` (created 0600 if absent) locked, waiting for any other holder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
