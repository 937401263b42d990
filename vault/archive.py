"""The vault's archive: every sealed bundle it ingested, as it arrived.

``H/archive/<source>/<source>-<sequence>.cvb``, placed by ingest before the
store's commit (a crash in between leaves an archived file without a store
row, which is harmless). Drills and ``vault rebuild`` read it back; the
signed state file beside it (:mod:`vault.statefile`) holds what the bundles
cannot give back. Bundles are never changed here: erasure leaves them
encrypted as they are, and tombstones keep what they erased out of the store.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from vault import atomic
from vault.bundle import file_name

FOLDER = "archive"


def place(home: Path, sealed: Path, source: str, sequence: int) -> Path:
    """Place the sealed bundle at ``H/archive/<source>/<file>`` atomically (link if possible)."""
    folder = Path(home) / FOLDER / source
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / file_name(source, sequence)
    tmp = folder / f".{target.name}{atomic.TMP_MARK}{os.getpid()}"
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(sealed, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            with atomic.AtomicFile(tmp) as out, open(sealed, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
        os.replace(tmp, target)
        atomic.fsync_dir(folder)
    except OSError as exc:
        raise atomic.media_error(exc, target) from exc
    return target
