"""Ids readers give records: derived when a platform has none, shortened when too long,
made unique when a platform repeats one."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from vault import records

if TYPE_CHECKING:
    from vault.sources import ReadOptions


def stable_id(*parts: str) -> str:
    """A short id derived from ``parts``: the same parts always give the same id."""
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:20]


#: characters of a too-long platform id kept readable in the id it is filed under
_LONG_ID_HEAD = 64


def record_id(value: str) -> str:
    """``value`` as a record id: itself when it fits, else a stable shortened form.

    A record id holds at most ``records.MAX_ID_CHARS`` characters, and one
    longer id refuses its whole conversation. A platform id over that (an
    odd export, a tool that wrote a blob into ``user``) is filed under its
    first 64 characters, ``…`` and the SHA-256 of the whole id: every mention
    of one id gives the same shortened id, and two ids that differ anywhere
    give two. The reader keeps the whole id in ``platform_ids`` and reports it
    (:func:`long_id_problem`).
    """
    if len(value) <= records.MAX_ID_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[:_LONG_ID_HEAD]}\u2026sha256:{digest}"


def long_id_problem(options: ReadOptions, path: Path | str, position: str, what: str,
                    value: str, kept_in: str) -> None:
    """Report that ``value`` was too long for an id and what it is filed under."""
    options.problem(path, position, f"{what} of {len(value):,} characters, more than the "
                    f"{records.MAX_ID_CHARS:,} an id holds: filed under {record_id(value)!r} "
                    f"(its first {_LONG_ID_HEAD} characters and SHA-256), the whole id kept "
                    f"in {kept_in}", said=True)


def unique_id(base: str, seen: set[str]) -> str:
    """``base``, or ``base#2``, ``#3``... when it is in ``seen``; the result is added to it.

    An export merged by hand, or a tool's fixed id, repeats message ids; a
    record needs them unique, and both copies are kept.
    """
    mid, count = base, 1
    while mid in seen:
        count += 1
        mid = f"{base}#{count}"
    seen.add(mid)
    return mid
