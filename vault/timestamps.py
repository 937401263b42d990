"""Timestamps as records carry them: UTC, with the writer's offset kept aside.

A canonical timestamp is RFC 3339 in UTC with a ``Z``:
``2024-03-14T09:05:12Z``, or with a fraction of a second when the source had
one (trailing zeros dropped: ``2024-03-14T09:05:12.25Z``). When the source
wrote a local time, the offset it used is kept in a sibling field
(``at_offset: "+01:00"``) so the local wall-clock time can always be shown
again: local time = UTC time + offset.

**One definition of a valid timestamp**, used when sealing, reading an
export and ingesting (:func:`parse`): ISO 8601 text as
:meth:`datetime.fromisoformat` reads it, with an offset or ``Z``, naming
a real calendar time whose UTC instant lies in years 0001..9999 (what
:class:`datetime` holds, and what SQLite and every reader of the store can
order and compare). A leap second (``23:59:60``) is refused, not rounded:
datetime cannot hold it, and moving it to ``:59`` or to the next day would
record a time the source never wrote (chat platforms do not write them).
:func:`is_canonical` is the canonical *shape* and a timestamp :func:`parse`
accepts, never the shape alone.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

# zoneinfo (and the sysconfig it reads its search path from) only where a zone is named:
# every command stamps times, few name zones.
if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

UTC = timezone.utc

_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,5}[1-9])?Z")  # fullmatch


class TimestampError(ValueError):
    pass


def is_canonical(value: str) -> bool:
    """The canonical shape, naming a time :func:`parse` accepts (not ``2024-13-45...``)."""
    if not _CANONICAL.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)  # the shape is UTC: in range once it parses
    except ValueError:
        return False
    return True


def order_key(canonical_text: str) -> str:
    """A key that sorts canonical times in time order.

    The canonical text itself does not: a fraction never ends in ``0`` and a
    whole second has none, so ``...:00Z`` sorts after ``...:00.5Z`` ('Z' is
    above '.'). Without the final ``Z`` the shorter text is the earlier time.
    The store compares its columns as text and keeps this sub-second quirk
    (see README, Known limitations); code picking a first or last time uses
    this key.
    """
    return canonical_text[:-1]


def format_utc(moment: datetime) -> str:
    """The canonical form of an aware datetime."""
    if moment.tzinfo is None:
        raise TimestampError("naive datetime: a time zone is required")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise TimestampError(f"outside years 0001..9999 in UTC: {moment.isoformat()}") \
            from None
    # %Y is not zero-padded below year 1000 on every platform
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_offset(moment: datetime) -> str | None:
    """``+HH:MM`` for an aware datetime, or None when it is UTC."""
    off = moment.utcoffset()
    if off is None or off == timedelta(0):
        return None
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse(value: str) -> datetime:
    """Parse a valid timestamp (module docstring): ISO 8601 with an offset or ``Z``."""
    if not isinstance(value, str) or not value:
        raise TimestampError("expected a timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        # datetime's own words say which part is out of range ("second must be in 0..59")
        why = "" if str(exc).startswith("Invalid isoformat") else f" ({exc})"
        raise TimestampError(f"not an ISO 8601 timestamp: {value[:40]!r}{why}") from None
    if moment.tzinfo is None:
        raise TimestampError(f"timestamp has no offset or Z: {value[:40]!r}")
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise TimestampError(f"outside years 0001..9999 in UTC: {value[:40]!r}") from None
    return moment


def canonicalize(value: str) -> tuple[str, str | None]:
    """(canonical UTC text, offset or None) for a timestamp with an offset."""
    if is_canonical(value):
        return value, None
    moment = parse(value)
    return format_utc(moment), format_offset(moment)


def from_local(naive: datetime, tz: str | None) -> tuple[str, str | None]:
    """UTC text and offset for a wall-clock time written in zone ``tz``.

    Without a zone the time is taken as UTC: the record then says so by
    carrying no offset, and the source's ``timezone`` setting should be fixed.
    Ambiguous times (the repeated hour when clocks go back) take the first.
    """
    if tz is None:
        return format_utc(naive.replace(tzinfo=UTC)), None
    moment = naive.replace(tzinfo=zone(tz), fold=0)
    return format_utc(moment), format_offset(moment)


def from_epoch(seconds: float) -> str:
    return format_utc(datetime.fromtimestamp(seconds, tz=UTC))


def zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimestampError(f"unknown time zone {name!r}") from exc


def now_utc() -> str:
    return format_utc(datetime.now(UTC))


def local_text(utc_text: str, offset: str | None) -> str:
    """The wall-clock time ``YYYY-MM-DDTHH:MM`` the source showed."""
    moment = parse(utc_text)
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = offset[1:].split(":")
        moment = moment + sign * timedelta(hours=int(hours), minutes=int(minutes))
    return moment.strftime("%Y-%m-%dT%H:%M")
