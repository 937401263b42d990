"""Subject search: every conversation a person took part in or is mentioned in, and why.

A :class:`~vault.subjectids.Subject` is what a DPO knows about a person,
normalised as ingest normalised what it stored (:mod:`vault.subjectids`),
then looked up in the store's indexes, never by reading messages:

* ``identifiers (kind, value)``: the person is a participant;
* ``mentions (kind, value)``: the identifier is written in a message.

:mod:`vault.subjectlinks` names the identifiers held on the same participant
records as the subject's but not given (her phone on the record that holds
her e-mail): ``subject find``, DSAR export and erasure show them and say
which option would include them; none of them adds them on its own.

Every :class:`Match` carries its reasons ("participant e-mail (customer)",
"phone mentioned in message 3"). Two kinds of match are never merged
silently with exact ones and are marked **needs review**: a name alone,
and a phone number whose digits were stored without a country code (no
region was configured when it was ingested, so it was never guessed).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from vault import timestamps
from vault.errors import UsageError
from vault.subjectids import Subject  # noqa: F401  (re-exported: the commands' one import)

#: how the CLI names each identifier kind in reasons
NOUN = {"email": "e-mail", "phone": "phone", "phone_unparsed": "phone digits",
         "customer_id": "customer id", "platform_id": "platform id", "name": "name"}
_CHUNK = 500
@dataclass
class Match:
    """One conversation and every reason it matched."""

    conv: int
    source: str
    conversation_id: str
    started_at: str
    last_at: str | None
    exact: bool = False
    customer: bool = False
    digits: bool = False  # matched on a number's digits stored without a country code
    reasons: list[str] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        return not self.exact

    def as_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "source": self.source,
                "started_at": self.started_at, "last_at": self.last_at,
                "match": "exact" if self.exact else "needs review",
                "subject_is_customer": self.customer, "reasons": self.reasons}


def day_bound(text: str | None, end: bool = False) -> str | None:
    """A ``--since``/``--until`` value as a canonical UTC instant.

    A date (``2024-03-01``) means the whole day: ``--until`` includes it.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            day = datetime.fromisoformat(text).replace(tzinfo=timestamps.UTC)
            moment = day + timedelta(days=1, microseconds=-1) if end else day
            return timestamps.format_utc(moment)
        return timestamps.format_utc(timestamps.parse(text))
    except ValueError:
        raise UsageError(f"not a date: {text!r} (expected YYYY-MM-DD or an RFC 3339 time)"
                         ) from None


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def platforms(conn: sqlite3.Connection) -> list[str]:
    """The platforms whose user ids the store holds (one index step per platform)."""
    out: list[str] = []
    after = ""
    while row := conn.execute("SELECT value FROM identifiers WHERE kind = 'platform_id' "
                              "AND value > ? ORDER BY value LIMIT 1", (after,)).fetchone():
        name = row[0].partition(":")[0]
        out.append(name)
        after = name + ";"  # ';' follows ':': past every id of this platform
    return out


#: the platforms chatvault's readers write user ids of (``platform_ids``)
READER_PLATFORMS = frozenset(("botframework", "freshdesk", "intercom", "rasa", "slack",
                              "telegram"))


def _require_platforms(conn: sqlite3.Connection, subject: Subject) -> None:
    """Refuse an ``--id`` of a platform the store holds no id of (a typo: 'slakc:U05').

    Searching it would answer "nothing held", and erasing by it would erase
    nothing and say the byte scan found no trace. A platform a reader writes
    ids of is searched even when none is held: retention or erasure may have
    removed them all, and "nothing held" is then the answer.
    """
    for pid in subject.platform_ids:
        name = pid.partition(":")[0]
        if name in READER_PLATFORMS or conn.execute(
                "SELECT 1 FROM identifiers WHERE kind = 'platform_id' AND value > ? "
                "AND value < ? LIMIT 1", (name + ":", name + ";")).fetchone():
            continue
        known = platforms(conn)
        raise UsageError(f"no {name!r} user id is held: the platforms held are "
                         f"{', '.join(known) or 'none'} (--id PLATFORM:ID)")


def find(conn: sqlite3.Connection, subject: Subject, *, since: str | None = None,
         until: str | None = None, source: str | None = None) -> list[Match]:
    """Every conversation matching ``subject``: exact ones first, then needs-review.

    ``since``/``until`` are canonical UTC instants (:func:`day_bound`); a
    conversation matches when its time span overlaps them. Only index
    lookups: cost grows with the number of matches, not of messages.
    """
    _require_platforms(conn, subject)
    found: dict[int, list[tuple[int, str, bool, bool, bool]]] = {}

    def note(conv: int, order: int, reason: str, exact: bool, customer: bool,
             digits: bool = False) -> None:
        found.setdefault(conv, []).append((order, reason, exact, customer, digits))

    exact = set(subject.exact())
    digits = {("phone_unparsed", d) for d in subject.unparsed_forms()}
    wanted = sorted(exact | digits | {("name", n) for n in subject.names})
    # One indexed lookup per table for every identifier at once.
    rows = ",".join("(?, ?)" for _ in wanted)
    params = [x for pair in wanted for x in pair]
    # CROSS JOIN keeps the few wanted pairs outside: one index search each.
    for kind, value, conv, role in conn.execute(
            f"WITH w(k, v) AS (VALUES {rows}) "
            "SELECT i.kind, i.value, i.conversation, p.role FROM w CROSS JOIN identifiers i "
            "ON i.kind = w.k AND i.value = w.v LEFT JOIN participants p "
            "ON p.conversation = i.conversation AND p.participant_id = i.participant_id",
            params):
        if (kind, value) in exact:
            who = f" ({role})" if role else ""
            note(conv, 0, f"participant {NOUN[kind]}{who}", True,
                 role == "customer" or (role is None and kind == "customer_id"))
        elif kind == "phone_unparsed":
            note(conv, 0, "participant phone that did not parse (without a country "
                          "code, or no country's; same digits; needs review)", False, False,
                 True)
        else:
            note(conv, 0, "participant name only (needs review)", False, False)
    for kind, value, conv, pos in conn.execute(
            f"WITH w(k, v) AS (VALUES {rows}) "
            "SELECT x.kind, x.value, x.conversation, m.position FROM w CROSS JOIN mentions x "
            "ON x.kind = w.k AND x.value = w.v JOIN messages m ON m.id = x.message", params):
        if (kind, value) in exact:
            note(conv, 1 + pos, f"{NOUN[kind]} mentioned in message {pos + 1}", True, False)
        elif kind == "phone_unparsed":
            note(conv, 1 + pos, f"phone digits without a country code in message {pos + 1} "
                                "(needs review)", False, False, True)
    if not found:
        return []
    return _matches(conn, found, since, until, source)


def _matches(conn: sqlite3.Connection,
             found: dict[int, list[tuple[int, str, bool, bool, bool]]],
             since: str | None, until: str | None, source: str | None) -> list[Match]:
    out: list[Match] = []
    for ids in _chunks(sorted(found)):
        sql = (f"SELECT id, source, conversation_id, started_at, last_at FROM conversations "
               f"WHERE id IN ({','.join('?' * len(ids))})")
        params: list[Any] = list(ids)
        if source is not None:
            sql, params = sql + " AND source = ?", params + [source]
        if since is not None:
            sql, params = sql + " AND coalesce(last_at, started_at) >= ?", params + [since]
        if until is not None:
            sql, params = sql + " AND started_at <= ?", params + [until]
        for conv, src, cid, started, last in conn.execute(sql, params):
            m = Match(conv, src, cid, started, last)
            for _, reason, exact, customer, digits in sorted(found[conv]):
                m.exact |= exact
                m.customer |= customer
                m.digits |= digits
                if reason not in m.reasons:
                    m.reasons.append(reason)
            out.append(m)
    out.sort(key=lambda m: (not m.exact, m.started_at, m.source, m.conversation_id))
    return out


def conversation_identifiers(conn: sqlite3.Connection, convs: Iterable[int], *,
                             mentions: bool = True
                             ) -> dict[int, list[tuple[str, str, str | None]]]:
    """(kind, value, participant role or None for a mention) per conversation rowid."""
    out: dict[int, list[tuple[str, str, str | None]]] = {}
    for ids in _chunks(sorted(set(convs))):
        marks = ",".join("?" * len(ids))
        for conv, kind, value, role in conn.execute(
                f"SELECT i.conversation, i.kind, i.value, coalesce(p.role, 'customer') "
                f"FROM identifiers i LEFT JOIN participants p ON p.conversation = "
                f"i.conversation AND p.participant_id = i.participant_id "
                f"WHERE i.conversation IN ({marks}) AND i.kind != 'name'", ids):
            out.setdefault(conv, []).append((kind, value, role))
        if mentions:
            for conv, kind, value in conn.execute(
                    f"SELECT DISTINCT conversation, kind, value FROM mentions "
                    f"WHERE conversation IN ({marks})", ids):
                out.setdefault(conv, []).append((kind, value, None))
    return out


# a VaultHandle was made here before it had a module of its own; callers still import it here
from vault.vaulthandle import VaultHandle, open_vault  # noqa: E402,F401


# -- what the commands run: restrictions applied, every search audited ---------------------

def find_for(v: VaultHandle, subject: Subject, *, since: str | None = None,
             until: str | None = None, source: str | None = None,
             purpose: str | None = None) -> dict[str, Any]:
    """``subject find``: matches minus restricted ones (counted), logged to the audit."""
    from vault import audit, restriction, subjectlinks

    v.require_source(source, "nothing could be found in it")
    matches = find(v.conn, subject, since=since, until=until, source=source)
    hidden = restriction.hidden(v.conn, v.key, [m.conv for m in matches])
    shown = [m for m in matches if m.conv not in hidden]
    links = subjectlinks.linked(v.conn, subject, [m.conv for m in shown if m.exact])
    audit.append(v.conn, "subject.find", target=v.target(subject.pairs()), purpose=purpose,
                 detail={"results": len(shown), "restricted": len(hidden),
                         "source": source, "since": since, "until": until})
    return {"results": [m.as_dict() for m in shown],
            "exact": sum(1 for m in shown if m.exact),
            "needs_review": sum(1 for m in shown if not m.exact),
            "restricted_hidden": len(hidden), "linked": [x.as_dict() for x in links]}


def search_for(v: VaultHandle, query: str, *, source: str | None = None, limit: int = 50,
               purpose: str | None = None) -> dict[str, Any]:
    """``search``: ranked conversations with snippets, restricted ones left out, audited.

    The query text itself is not logged (it may be an e-mail address):
    the audit target is a keyed hash of it.
    """
    from vault import audit, fulltext, restriction

    v.require_source(source, "nothing could be found in it")
    found, more = fulltext.search_conversations(v.conn, query, source, limit, v.region)
    rowids = {(s, c): i for i, s, c in v.conn.execute(
        "SELECT id, source, conversation_id FROM conversations WHERE conversation_id IN "
        f"({','.join('?' * len(found))})", [h.conversation_id for h in found])} if found else {}
    hidden = restriction.hidden(v.conn, v.key, rowids.values())
    shown = [h for h in found if rowids.get((h.source, h.conversation_id)) not in hidden]
    audit.append(v.conn, "search", target=v.target([("query", query)]), purpose=purpose,
                 detail={"results": len(shown), "restricted": len(found) - len(shown),
                         "source": source})
    return {"results": [h.as_dict() for h in shown], "more": more,
            "restricted_hidden": len(found) - len(shown)}
