"""Is this store older than the vault's state file? A check cheap enough for every command.

Tombstones, retention purge markers and held bundles are never deleted, and
the state file's signed header records how many of each the store held when
it was last saved (``context.kept``: :mod:`vault.statefile`). A store that
holds fewer is older than the state file: a backup put back, or a store made
anew (``keys import-paper`` before ``vault rebuild``). Answering from it would
say "nothing held" of people it never saw, restoring from it would hand out
conversations erased since, and ingesting into it would take erased people
back from old bundles; so every command that reads or changes the store asks
:func:`require_current` first.

The header is peeked at without verifying the signature and without
:mod:`vault.bundle` (which brings PyNaCl and zstandard: 50 ms a ``subject
find`` would pay). That guards against accidents, not against someone who
can rewrite the state file (they could as well delete it); ``vault status``
verifies the signature. The fixed prefix is the one :mod:`vault.bundle.layout`
defines; ``tests/test_statefile.py`` checks this reading against
:func:`vault.bundle.inspect`.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from vault import canonical
from vault.errors import StateRegression

#: what a store only ever gains (and the state file counts)
COUNTED = ("tombstones", "retention_purges", "bundles")
# magic, version, flags, meta_len, ... (vault.bundle.layout.PREFIX)
_PREFIX = struct.Struct(">8sHHIIHHQQ32s")
_MAGIC = b"\x89CVB\r\n\x1a\n"
_MAX_META = 64 * 1024


def path_of(home: Path) -> Path:
    return Path(home) / "archive" / "vault-state.cvs"


def recorded(path: Path) -> dict[str, int]:
    """The counts a state file's header recorded; empty when there are none to trust."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PREFIX.size)
            if len(head) < _PREFIX.size:
                return {}
            magic, _, _, meta_len, *_ = _PREFIX.unpack(head)
            if magic != _MAGIC or not 2 <= meta_len <= _MAX_META:
                return {}
            meta = canonical.loads(fh.read(meta_len))
    except (OSError, canonical.CanonicalError):
        return {}
    kept = (meta.get("context") or {}).get("kept") if isinstance(meta, dict) else None
    if not isinstance(kept, dict):
        return {}  # a state file written before the counts were kept
    return {k: v for k, v in kept.items()
            if k in COUNTED and isinstance(v, int) and not isinstance(v, bool)}


def held(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            for name in COUNTED}


def behind(path: Path, now: dict[str, int]) -> dict[str, tuple[int, int]]:
    """What the state file at ``path`` remembers more of than ``now``: (recorded, now)."""
    return {t: (n, now[t]) for t, n in recorded(path).items() if t in now and now[t] < n}


def regression(path: Path, lost: dict[str, tuple[int, int]], done: str) -> StateRegression:
    said = ", ".join(f"{t}: {was} in the state file, {has} in the store"
                     for t, (was, has) in sorted(lost.items()))
    return StateRegression(
        f"the store remembers less than the state file ({said}): it is older than the "
        "state file (a backup put back, a store made anew) or was altered, and using it "
        f"could bring erased or purged conversations back. {done} Rebuild the store from "
        "the archive and this state file ('chatvault vault rebuild --into NEWHOME'), then "
        "use NEWHOME", path=path)


def require_current(home: Path, conn: sqlite3.Connection) -> None:
    """Refuse (:class:`StateRegression`, exit 4) a store older than the state file."""
    path = path_of(home)
    if path.is_file():
        lost = behind(path, held(conn))
        if lost:
            raise regression(path, lost, "Nothing was done.")
