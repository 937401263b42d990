"""What a restore carries: the selection, the screen and the plan of parts.

:class:`Selection` picks conversations from the store (:func:`candidates`);
:class:`Screen` applies tombstones and Art. 18 restrictions to each, by the
filter ingest uses; :func:`plan` groups what is left into parts of one
source each, within the size budget. Sealing them is :mod:`vault.restore`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from vault import canonical, identifiers, records, restriction, timestamps, tombstones
from vault import vaultconfig
from vault.errors import UsageError


# -- what to restore ---------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """Which conversations: a source (and window), ids, subjects, or exact keys."""

    source: str | None = None
    since: str | None = None
    until: str | None = None
    conversations: tuple[str, ...] = ()
    subject_emails: tuple[str, ...] = ()
    keys: tuple[tuple[str, str], ...] = ()  # (source, conversation_id): drills

    def check(self) -> "Selection":
        modes = [bool(self.conversations), bool(self.subject_emails), bool(self.keys)]
        if sum(modes) > 1:
            raise UsageError("give conversations or subjects, not both")
        if not any(modes) and self.source is None:
            raise UsageError("say what to restore: --source, --conversation or "
                             "--subject-email")
        for when in (self.since, self.until):
            if when is not None:
                parse_day(when)
        if self.since and self.until and parse_day(self.since) >= parse_day(self.until, True):
            raise UsageError(f"--since {self.since} is after --until {self.until}: there "
                             "would be nothing to restore")
        return self

    def describe(self) -> dict[str, Any]:
        """For headers and the audit log: counts, never identifiers."""
        return {"source": self.source, "since": self.since, "until": self.until,
                "conversations": len(self.conversations) + len(self.keys),
                "subjects": len(self.subject_emails)}


def parse_day(text: str, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole day) or an RFC 3339 time; UsageError otherwise."""
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            day = datetime.fromisoformat(text).replace(tzinfo=timestamps.UTC)
            return day + timedelta(days=1) if end else day
        return timestamps.parse(text)
    except (ValueError, timestamps.TimestampError):
        raise UsageError(f"not a date (YYYY-MM-DD) or RFC 3339 time: {text!r}") from None


#: the attachments of a conversation that has none: one shared mapping, never changed
_NO_BLOBS: Mapping[str, int] = MappingProxyType({})


@dataclass(slots=True)
class Row:
    """A conversation picked for a restore, with what planning needs of it.

    A restore of a whole source holds one for each conversation until it is
    planned into parts: slots, and one shared empty mapping for the many
    without attachments, keep that to about 200 bytes a conversation.
    """

    id: int
    source: str
    conversation_id: str
    size: int
    bundle: int
    blobs: Mapping[str, int] = field(default_factory=lambda: _NO_BLOBS)
    data: bytes | None = None  # a redacted copy to send instead of the stored record


def candidates(conn: Any, sel: Selection) -> list[Row]:
    base = ("SELECT id, source, conversation_id, length(CAST(record AS BLOB)), bundle, "
            "started_at, coalesce(last_at, started_at) FROM conversations")
    where, params = [], []  # type: tuple[list[str], list[Any]]
    if sel.source is not None:
        where.append("source = ?")
        params.append(sel.source)
    if sel.subject_emails:
        emails = [e for e in (identifiers.normalise_email(x) for x in sel.subject_emails) if e]
        if not emails:
            raise UsageError("--subject-email: not an e-mail address")
        marks = ", ".join("?" * len(emails))
        where.append(f"id IN (SELECT conversation FROM identifiers WHERE kind = 'email' "
                     f"AND value IN ({marks}) UNION SELECT conversation FROM mentions "
                     f"WHERE kind = 'email' AND value IN ({marks}))")
        params += emails * 2
    sql = base + (" WHERE " + " AND ".join(where) if where else "")
    wanted_keys = set(sel.keys)
    since = parse_day(sel.since) if sel.since else None
    until = parse_day(sel.until, end=True) if sel.until else None
    out = []
    for cid, src, conv_id, size, bundle_row, started, last in conn.execute(
            sql + " ORDER BY source, conversation_id", params):
        if sel.conversations and not any(names(given, src, conv_id)
                                         for given in sel.conversations):
            continue
        if wanted_keys and (src, conv_id) not in wanted_keys:
            continue
        if since and timestamps.parse(last) < since:
            continue
        if until and timestamps.parse(started) >= until:
            continue
        out.append(Row(cid, sys.intern(src), conv_id, int(size), bundle_row))
    return out


def names(given: str, source: str, conversation_id: str) -> bool:
    """Does ``--conversation given`` name this one: ``ID``, or ``SOURCE/ID`` as listed?"""
    return given in (conversation_id, f"{source}/{conversation_id}")


def unheld(conn: Any, sel: Selection) -> list[str]:
    """The ``--conversation`` values that name no conversation the store holds.

    A restore of those would be empty and look like success: a typo, or a
    conversation erased or purged since, must be said, not restored as nothing.
    """
    out = []
    for given in sel.conversations:
        head, _, rest = given.partition("/")
        keys = [given] + ([rest] if rest else [])
        marks = ", ".join("?" * len(keys))
        rows = conn.execute(f"SELECT source, conversation_id FROM conversations "
                            f"WHERE conversation_id IN ({marks})", keys)
        if not any(names(given, src, cid) and sel.source in (None, src) for src, cid in rows):
            out.append(given)
    return out


class Screen:
    """Tombstones and Art. 18 restrictions applied to each record, by the filter ingest uses.

    ``check`` returns ``"keep"``, ``"tombstoned"`` (the conversation is left
    out) or ``"redacted"`` (a subject only mentioned: the redacted copy the
    filter makes goes out instead, kept in ``row.data``).
    """

    def __init__(self, home: Path, conn: Any) -> None:
        self.home = Path(home)
        self.key = tombstones.load_key(home, conn)
        self.region = vaultconfig.load(home).phone_region
        self.active = bool(conn.execute("SELECT 1 FROM tombstones LIMIT 1").fetchone()
                           or restriction.active_hashes(conn))
        self._filters: dict[tuple[str, str | None], tuple[Any, Any]] = {}
        self._regions: dict[int, str | None] = {}

    def filters(self, conn: Any, row: Row) -> list[tuple[str, Any]]:
        region = tombstones.region_of_bundle(conn, self.home, row.bundle, self.region,
                                             self._regions)
        key = (row.source, region)
        if key not in self._filters:
            self._filters[key] = (
                tombstones.Filter(conn, self.key, row.source, region),
                restriction.output_filter(conn, self.key, row.source, region))
        erased, restricted = self._filters[key]
        return [("tombstoned", erased), ("restricted", restricted)]

    def check(self, conn: Any, row: Row) -> str:
        if not self.active:
            return "keep"
        (text,) = conn.execute("SELECT record FROM conversations WHERE id = ?",
                               (row.id,)).fetchone()
        conv = canonical.loads(text)
        result = "keep"
        for reason, flt in self.filters(conn, row):
            shown = flt.apply(conv)
            if shown is None:
                return reason
            if shown is not conv:
                conv, result = shown, "redacted"
        if result == "redacted":
            row.data, _ = records.canonical_record(conv, f"{row.source} record {row.id}")
            row.size = len(row.data)
        return result


# -- planning parts under the size limit ------------------------------------------------------

def attach_blobs(conn: Any, rows: list[Row]) -> None:
    for row in rows:
        found = conn.execute(
            "SELECT DISTINCT r.sha256, a.size FROM attachment_refs r JOIN attachments a "
            "ON a.sha256 = r.sha256 WHERE r.conversation = ?", (row.id,)).fetchall()
        if found:
            row.blobs = dict(found)


def plan(rows: list[Row], budget: int) -> list[list[Row]]:
    """Rows grouped into parts: one source per part, each within ``budget`` plaintext."""
    parts: list[list[Row]] = []
    current: list[Row] = []
    used, blobs, source = 0, set(), None  # type: int, set[str], str | None
    for row in rows:
        cost = 5 + row.size + sum(41 + n for sha, n in row.blobs.items())
        if cost > budget:
            raise UsageError(f"conversation {row.conversation_id!r} of {row.source} needs "
                             f"{cost} bytes, more than --max-bytes allows; raise --max-bytes")
        extra = 5 + row.size + sum(41 + n for sha, n in row.blobs.items() if sha not in blobs)
        if current and (row.source != source or used + extra > budget):
            parts.append(current)
            current, used, blobs = [], 0, set()
            extra = cost
        current.append(row)
        used += extra
        blobs.update(row.blobs)
        source = row.source
    if current:
        parts.append(current)
    return parts
