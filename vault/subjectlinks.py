"""Identifiers linked to a subject: on the very participant records hers are on.

A DPO looks a person up by what they know (an e-mail address); the store
may hold more on the same participant record (her phone number next to
that address in a Slack profile). Those are the subject's own data: a DSAR
package leaves them unredacted and lists them, but nothing searches with
them or erases them unless a person adds them: ``subject find``, ``dsar
export`` and ``erase`` name each with the option that would include it.
Only the records an exact identifier of the subject is on are read, never
further (what a linked phone number is on elsewhere is not followed).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable

from vault.subjects import NOUN, Subject

#: the option that adds each kind of identifier to a search, an erasure or a case
OPTION = {"email": "--email", "phone": "--phone", "phone_unparsed": "--phone",
          "platform_id": "--id", "customer_id": "--customer-id"}
#: records named per linked identifier (the count says how many there are)
_VIA_SHOWN = 3


@dataclass
class Link:
    """An identifier held on the same participant record as one the subject was given by.

    ``via`` holds (given kind, given value, source, conversation id,
    participant id) of each record that links it.
    """

    kind: str
    value: str
    via: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "option": OPTION[self.kind],
                "linked_by": "same participant record", "records": len(self.via),
                "via": [{"identifier": f"{NOUN[k]} {v}", "source": s,
                         "conversation_id": c, "participant_id": p}
                        for k, v, s, c, p in self.via[:_VIA_SHOWN]]}


def describe(link: dict[str, Any]) -> str:
    """A :meth:`Link.as_dict` in words: what, and on which record."""
    first, more = link["via"][0], link["records"] - 1
    return (f"{NOUN[link['kind']]} {link['value']} (participant {first['participant_id']} in "
            f"{first['source']}/{first['conversation_id']}, on the same record as "
            f"{first['identifier']}" + (f"; {more} more record(s)" if more else "") + ")")


def link_lines(links: Iterable[dict[str, Any]],
               todo: str = "add {option} to include it") -> list[str]:
    """One line per linked identifier not given, saying what would include it."""
    return [f"also linked to this subject: {describe(x)}; {todo.format(option=x['option'])}"
            for x in links]


def linked(conn: sqlite3.Connection, subject: Subject,
           within: Iterable[int] | None = None) -> list[Link]:
    """Identifiers on the participant records that hold one of ``subject``'s, not given.

    Only the very records an exact identifier of the subject is on (never
    further: what those identifiers are on elsewhere is not followed);
    ``within`` limits them to some conversations (rowids). Names are left out.
    """
    given = set(subject.exact())
    if not given:
        return []
    digits = set(subject.unparsed_forms())
    allowed = None if within is None else set(within)
    wanted = sorted(given)
    rows = ",".join("(?, ?)" for _ in wanted)
    out: dict[tuple[str, str], Link] = {}
    for conv, kind, value, by_kind, by_value, source, cid, pid in conn.execute(
            f"WITH w(k, v) AS (VALUES {rows}) "
            "SELECT DISTINCT i.conversation, x.kind, x.value, i.kind, i.value, c.source, "
            "c.conversation_id, i.participant_id FROM w CROSS JOIN identifiers i "
            "ON i.kind = w.k AND i.value = w.v JOIN identifiers x "
            "ON x.conversation = i.conversation AND x.participant_id = i.participant_id "
            "JOIN conversations c ON c.id = i.conversation "
            "WHERE i.participant_id IS NOT NULL AND x.kind != 'name' "
            "ORDER BY c.started_at, c.source, c.conversation_id",
            [x for pair in wanted for x in pair]):
        if ((kind, value) in given or (kind == "phone_unparsed" and value in digits)
                or (allowed is not None and conv not in allowed)):
            continue
        link = out.setdefault((kind, value), Link(kind, value))
        if (by_kind, by_value, source, cid, pid) not in link.via:
            link.via.append((by_kind, by_value, source, cid, pid))
    return list(out.values())
