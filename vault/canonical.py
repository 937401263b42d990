"""Canonical JSON: the one byte form chatvault hashes, signs and compares.

The canonical form of a JSON value is its compact UTF-8 encoding with object
keys sorted (at every depth), no insignificant whitespace, no ASCII escaping
of non-ASCII text, and integers limited to 64 bits. Strings are kept exactly
as written: no Unicode normalisation, no trimming. ``dumps(loads(b)) == b``
for every canonical ``b``, which is what makes hashes of records stable.

orjson does the work: it is exact about strings, refuses lone surrogates and
is fast enough to canonicalise every record while sealing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS


class CanonicalError(ValueError):
    """A value that has no canonical JSON form (or bytes that are not JSON)."""


def dumps(value: Any) -> bytes:
    """The canonical bytes of ``value`` (no trailing newline)."""
    try:
        return orjson.dumps(value, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise CanonicalError(str(exc)) from exc


def loads(data: bytes | str) -> Any:
    """Parse JSON text; duplicate keys keep the last value, as in RFC 8259 practice."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CanonicalError(str(exc)) from exc


def is_canonical(data: bytes) -> bool:
    try:
        return dumps(loads(data)) == data
    except CanonicalError:
        return False


def digest(value: Any) -> str:
    """SHA-256 hex digest of the canonical form of ``value``."""
    return hashlib.sha256(dumps(value)).hexdigest()
