"""Identifiers linked to a subject: on the very participant records hers are on.

A DPO looks a person up by what they know (an e-mail address); the store
may hold more on the same participant record (her phone number next to
that address in a Slack profile). Those are the subject's own data: a DSAR
package leaves them unredacted and lists them, but nothing searches with
them or erases them unless a person adds them: ``subject find``, ``dsar
export`` and ``erase`` name each with the option that would include it.
Only the records an exact identifier of the subject is on are read, never
further (what a linked phone number is on elsewhere is not followed).

Two cases may be somebody else's data, and are never treated as the
subject's own (:func:`own`): a linked identifier that is also on records
with another e-mail address or customer id (a phone number shared with
someone else: ``shared_with``), and every link when the records reached
name different people (``conflict``: a linked e-mail address or customer
id where the subject was given one of that kind, or two linked ones of a
kind). The commands warn about both; adding such an identifier would reach
the other person's conversations.
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
    #: e-mail addresses or customer ids, neither given nor linked, on records holding it
    shared_with: int = 0
    #: a second e-mail address or customer id for the subject: perhaps another person
    conflict: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "option": OPTION[self.kind],
                "linked_by": "same participant record", "records": len(self.via),
                "shared_with": self.shared_with, "conflict": self.conflict,
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
    """One line per linked identifier not given, saying what would include it.

    A warning comes first when the identifiers given lead to different
    people; a shared identifier says so instead of suggesting it.
    """
    links = list(links)
    lines = []
    if any(x.get("conflict") for x in links):
        lines.append("WARNING: the records reached name more than one e-mail address or "
                     "customer id: perhaps different people share an identifier given; check "
                     "who the subject is (no linked identifier is taken as theirs)")
    for x in links:
        if x.get("conflict"):
            lines.append(f"also on a record reached: {describe(x)}; perhaps another person: "
                         f"do not add {x['option']} without checking")
        elif x.get("shared_with"):
            lines.append(f"also linked to this subject: {describe(x)}; but also on records "
                         f"with {x['shared_with']} other e-mail address(es) or customer id(s), "
                         f"perhaps another person's: {x['option']} would reach those too")
        else:
            lines.append(f"also linked to this subject: {describe(x)}; "
                         + todo.format(option=x["option"]))
    return lines


#: kinds of which a participant record holds one value: two values, perhaps two people
_PERSONAL = ("email", "customer_id")


def own(links: list[Link]) -> list[Link]:
    """The links that are the subject's own data alone (see the module doc)."""
    if any(x.conflict for x in links):
        return []
    return [x for x in links if not x.shared_with]


def _mark_conflicts(links: list[Link], given: set[tuple[str, str]]) -> None:
    """``conflict`` on personal links where the subject has another of that kind."""
    for kind in _PERSONAL:
        mine = [x for x in links if x.kind == kind]
        if mine and (len(mine) > 1 or any(k == kind for k, _ in given)):
            for x in mine:
                x.conflict = True


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
    known = given | set(out)
    for link in out.values():
        link.shared_with = len(_personal_beside(conn, link) - known)
    links = list(out.values())
    _mark_conflicts(links, given)
    return links


def _personal_beside(conn: sqlite3.Connection, link: Link) -> set[tuple[str, str]]:
    """E-mail addresses and customer ids on every record that holds ``link``."""
    marks = ",".join("?" * len(_PERSONAL))
    # CROSS JOIN keeps SQLite's order: the records holding ``link`` first (a few rows by
    # the kind-value index), then what else they hold. Left to choose, it began with
    # every e-mail address in the store: 70 ms a link on 36,000 conversations.
    return set(conn.execute(
        "SELECT DISTINCT d.kind, d.value FROM identifiers l CROSS JOIN identifiers d "
        "ON d.conversation = l.conversation AND d.participant_id = l.participant_id "
        f"WHERE l.kind = ? AND l.value = ? AND d.kind IN ({marks})",
        (link.kind, link.value, *_PERSONAL)))
