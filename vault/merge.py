"""Merging two versions of one conversation by message id.

A platform's export often holds only the latest part of a long chat
(WhatsApp stops at a message limit, vendors trim history), so a version
sealed later can lack messages the vault already stores. A backup must not
lose them: the store keeps the union. :func:`merge` is a pure function of
the two versions and which one came from the higher bundle sequence, never
of which arrived first, so live ingest (bundles in any order, gaps filled
late) and ``vault rebuild`` (the archive replayed in sequence order) store
the same bytes.

For each message id the version from the higher sequence wins; messages
only the lower one holds are kept. Everything at conversation level
(title, status, ended_at, extra...) is the higher version's, but
``started_at`` is the earliest of the two, since kept messages may be older.
Participants of the lower version that the higher one lacks (by id) are
all kept: a kept message's ``from`` must name one, and someone who wrote
there once took part in the conversation.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Any

from vault import canonical, timestamps


def missing_ids(have: dict[str, Any], other: dict[str, Any]) -> bool:
    """True when ``other`` holds a message id that ``have`` lacks (a merge would add it)."""
    ids = {m["id"] for m in have["messages"]}
    return any(m["id"] not in ids for m in other["messages"])


def merge(high: dict[str, Any], low: dict[str, Any]) -> dict[str, Any]:
    """``high`` (the higher bundle sequence) with what only ``low`` holds added.

    Messages keep each version's own order and are interleaved by time
    (:func:`heapq.merge`, so ``high``'s messages come first among equal
    times): validation asks nothing of message order, and the platform's
    order within one export is the best there is. Returns ``high`` itself
    when ``low`` adds nothing.
    """
    ids = {m["id"] for m in high["messages"]}
    kept = [m for m in low["messages"] if m["id"] not in ids]
    if not kept:
        return high
    out = dict(high)
    people = {p["id"] for p in high["participants"]}
    out["participants"] = [*high["participants"],
                           *(p for p in low["participants"] if p["id"] not in people)]
    out["messages"] = list(heapq.merge(high["messages"], kept,
                                       key=lambda m: timestamps.order_key(m["at"])))
    if timestamps.order_key(low["started_at"]) < timestamps.order_key(high["started_at"]):
        out["started_at"] = low["started_at"]
        out.pop("started_at_offset", None)
        if "started_at_offset" in low:
            out["started_at_offset"] = low["started_at_offset"]
    return out


#: the fields a merge may change; everything else is the higher version's as it came
_MERGED = ("participants", "messages", "started_at", "started_at_offset")


@dataclass(frozen=True)
class Print:
    """What a restore drill keeps of an archived record to find it in a merged one.

    Hashes, not the record: a drill over every bundle holds one per record.
    """

    head: str  # hash of the fields a merge leaves as they are
    people: dict[str, str]  # participant id -> hash
    messages: dict[str, str]  # message id -> hash
    started_at: str


def _hash(value: Any) -> str:
    return hashlib.sha256(canonical.dumps(value)).hexdigest()


def fingerprint(conv: dict[str, Any]) -> Print:
    """The :class:`Print` of one (validated, tombstone-filtered) archived record."""
    return Print(_hash({k: v for k, v in conv.items() if k not in _MERGED}),
                 {p["id"]: _hash(p) for p in conv["participants"]},
                 {m["id"]: _hash(m) for m in conv["messages"]}, conv["started_at"])


def holds(stored: dict[str, Any], archived: Print, *, same_sequence: bool) -> bool:
    """True when the stored record is what merging the archived one in would keep of it.

    ``same_sequence``: the store's version comes from the archived record's
    own bundle, so its fields, participants and messages must all be there
    unchanged, with no later ``started_at``: only messages of lower
    sequences were added. Otherwise a higher sequence's version is stored,
    and it wins for any message id it holds too: every archived message id
    must still be there, but its content may be the newer one.
    """
    msgs = {m["id"]: m for m in stored["messages"]}
    if not same_sequence:
        return all(mid in msgs for mid in archived.messages)
    if _hash({k: v for k, v in stored.items() if k not in _MERGED}) != archived.head:
        return False
    people = {p["id"]: p for p in stored["participants"]}
    if any(pid not in people or _hash(people[pid]) != h
           for pid, h in archived.people.items()):
        return False
    if any(mid not in msgs or _hash(msgs[mid]) != h for mid, h in archived.messages.items()):
        return False
    return timestamps.order_key(stored["started_at"]) <= timestamps.order_key(archived.started_at)
