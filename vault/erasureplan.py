"""Planning an erasure: every conversation that holds the subject, and what happens to each.

Conversations are found two ways:

* **subject search** (:func:`vault.subjects.find`): the identifiers and
  mentions indexes, exact matches and phone digits stored without a country
  code, never a name alone. The customer's platform and customer ids found
  there are erased with them, so an old bundle naming the person only by a
  platform id is caught too;
* **a scan of every stored record** for the subject's e-mail addresses (in
  any URL or HTML encoding) and phone numbers (their national digits,
  whatever stands between them): an identifier written only in a title, an
  HTML body, Slack blocks or an ``extra`` field is in no index. The scan
  reads the whole table; erasures are rare, and the byte scan that proves
  them reads the whole file anyway. The same scan looks for the subject's
  platform ids written whole as a JSON string (a Slack channel's member
  list, :mod:`vault.extraids`).

Identifiers held on the subject's participant records but not given (a
phone on the record that holds the e-mail given) are named in the plan
(:attr:`Plan.linked`, from :func:`vault.subjectlinks.linked`), never added: the
operator approved the identifiers given.

Each conversation is decided by the very filter ingest uses
(:class:`vault.tombstones.Filter`) with the tombstones this erasure will
add: removed where the subject is the customer, else redacted. A redacted
copy is then checked for the subject's identifiers **as written** (the
needles, matched as the final byte scan matches them: bytes, any ASCII
letter case), and against what the ingest hook would make of the original
if an old bundle brought it again. A copy that still holds one (a form the
filter does not recognise), or that ingest would not make alike, is not
kept: the conversation is removed whole and tombstoned as a conversation,
so no bundle, rebuild or restore brings it back. Nothing here holds an
identifier once the plan is gone.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from vault import canonical, extraids, identifiers, redaction, subjectlinks, tombstones
from vault.subjectlinks import Link
from vault.subjects import Subject, VaultHandle


@dataclass
class Item:
    conv: int
    source: str
    conversation_id: str
    action: str  # drop | redact
    redacted: dict[str, Any] | None = None
    attachments: list[str] = field(default_factory=list)
    unrecognised: bool = False  # dropped whole: a written form the filter missed


@dataclass
class Plan:
    """What an erasure will do; nothing here holds the identifiers in clear."""

    pairs: list[tuple[str, str]]
    items: list[Item]
    held: dict[int, list[str]]
    needles: set[bytes] = field(default_factory=set, repr=False)
    #: identifiers on the subject's participant records this erasure does not cover
    linked: list[Link] = field(default_factory=list, repr=False)

    @property
    def dropped(self) -> list[Item]:
        return [i for i in self.items if i.action == "drop"]

    @property
    def redacted(self) -> list[Item]:
        return [i for i in self.items if i.action == "redact"]

    @property
    def whole(self) -> list[str]:
        """``source/conversation_id`` of conversations tombstoned as a whole."""
        return [tombstones.conversation_value(i.source, i.conversation_id)
                for i in self.items if i.unrecognised]

    def holds(self) -> list[str]:
        return sorted({n for names in self.held.values() for n in names})

    def as_dict(self) -> dict[str, Any]:
        return {"remove": [f"{i.source}/{i.conversation_id}" for i in self.dropped],
                "redact": [f"{i.source}/{i.conversation_id}" for i in self.redacted],
                "identifiers": len(self.pairs), "held_by": self.holds(),
                "held_conversations": len(self.held),
                "linked_not_given": [x.as_dict() for x in self.linked]}


def _pairs(subject: Subject) -> list[tuple[str, str]]:
    pairs = subject.exact()
    return pairs + [("phone_unparsed", d) for d in subject.unparsed_forms()
                    if ("phone_unparsed", d) not in pairs]


def stored_record(conn: sqlite3.Connection, conv: int) -> tuple[dict[str, Any], int]:
    text, bundle = conn.execute("SELECT record, bundle FROM conversations WHERE id = ?",
                                (conv,)).fetchone()
    return canonical.loads(text), bundle


def _customer_ids(v: VaultHandle, pairs: list[tuple[str, str]]) -> Subject:
    """Platform and customer ids of the participants the subject is the customer as."""
    extra = Subject(platform_ids=[], customer_ids=[])
    # the subject's own records first (CROSS JOIN keeps that order): left to choose,
    # SQLite began with every platform and customer id held
    for kind, value in v.conn.execute(
            f"WITH w(k, v) AS (VALUES {','.join('(?, ?)' for _ in pairs)}) "
            "SELECT DISTINCT x.kind, x.value FROM w CROSS JOIN identifiers i "
            "ON i.kind = w.k AND i.value = w.v CROSS JOIN identifiers x "
            "ON x.conversation = i.conversation AND x.participant_id = i.participant_id "
            "JOIN participants p ON p.conversation = i.conversation "
            "AND p.participant_id = i.participant_id "
            "WHERE p.role = 'customer' AND x.kind IN ('platform_id', 'customer_id')",
            [x for p in pairs for x in p]):
        if (kind, value) not in pairs:
            pairs.append((kind, value))
            (extra.platform_ids if kind == "platform_id" else extra.customer_ids).append(value)
    return extra


Test = Callable[[str], bool]


def scan_test(subject: Subject) -> Test | None:
    """What the record scan looks for: e-mails in any encoding, phones' national digits.

    A record with no ``%`` and no ``&`` can only hold an address written
    plainly: a substring test of its case-folded text answers, at C speed.
    Only the others go through the pattern of every encoding.
    """
    emails = list(subject.emails)
    encoded = re.compile("|".join(redaction.encoded_pattern(e).pattern for e in emails),
                         re.IGNORECASE) if emails else None
    digits = []
    for phone in subject.phones:
        forms = tombstones.phone_digit_forms(phone)
        digits.append(r"\D{0,6}".join(forms[1] if len(forms) > 1 else forms[0]))
    phones = re.compile("|".join(digits)) if digits else None
    if encoded is None and phones is None:
        return None

    def test(text: str) -> bool:
        if emails:
            folded = text.casefold()
            if any(e in folded for e in emails):
                return True
            if ("%" in text or "&" in text) and encoded and encoded.search(text):
                return True
        return phones is not None and phones.search(text) is not None

    return test


def text_test(needles: Iterable[bytes]) -> Test | None:
    """Does a text hold a needle (any letter case)? The byte scan's test, on text."""
    found = sorted({n.decode("utf-8", "replace").casefold() for n in needles})
    if not found:
        return None
    return lambda text: any(n in text.casefold() for n in found)


def scan_records(conn: sqlite3.Connection, test: Test | None
                 ) -> list[tuple[int, str, str]]:
    """(rowid, source, conversation id) of every stored record ``test`` says yes to.

    ``test`` is also left registered as the SQL function ``chatvault_holds``.
    """
    if test is None:
        return []
    conn.create_function("chatvault_holds", 1, lambda text: 1 if test(text or "") else 0,
                         deterministic=True)
    return list(conn.execute("SELECT id, source, conversation_id FROM conversations "
                             "WHERE chatvault_holds(record) ORDER BY id"))


def needle_pattern(needles: Iterable[bytes]) -> re.Pattern[bytes] | None:
    """The byte scan's matcher: any needle, ASCII letters in any case."""
    found = sorted(set(needles))
    return re.compile(b"|".join(re.escape(n) for n in found), re.IGNORECASE) if found else None


def plan(v: VaultHandle, subject: Subject) -> Plan:
    """Decide, conversation by conversation, what erasing ``subject`` does."""
    from vault import holds, subjects

    pairs = _pairs(subject)
    found = {m.conv: (m.source, m.conversation_id)
             for m in subjects.find(v.conn, subject) if m.exact or m.digits}
    extra = _customer_ids(v, pairs)
    if not extra.empty():
        found.update({m.conv: (m.source, m.conversation_id)
                      for m in subjects.find(v.conn, extra) if m.conv not in found})
    for rowid, source, cid in scan_records(v.conn, scan_test(subject)):
        found.setdefault(rowid, (source, cid))
    bare = extraids.record_test([*subject.platform_ids, *extra.platform_ids])
    for rowid, source, cid in scan_records(v.conn, bare):  # a channel's member list
        found.setdefault(rowid, (source, cid))

    every = {(k, h) for k, h in v.conn.execute("SELECT kind, hash FROM tombstones")}
    every |= {(k, v.key.hash(tombstones.PURPOSE_TOMBSTONE, k, val)) for k, val in pairs}
    filters: dict[tuple[str | None, str], tombstones.Filter] = {}
    regions: dict[int, str | None] = {}
    out = Plan(pairs, [], {})
    originals: dict[int, dict[str, Any]] = {}
    used: dict[int, tombstones.Filter] = {}
    for rowid, (source, cid) in sorted(found.items()):
        conv, bundle_row = stored_record(v.conn, rowid)
        region = tombstones.region_of_bundle(v.conn, v.home, bundle_row, v.region, regions)
        f = filters.get((region, source))
        if f is None:
            f = filters[(region, source)] = tombstones.Filter(None, v.key, source, region,
                                                              hashes=every)
        decision = f.decide(conv)
        if decision.action == "keep":
            continue
        item = Item(rowid, source, cid, decision.action, decision.conversation,
                    decision.attachments_dropped)
        if decision.action == "drop":
            item.attachments = _attachments(conv)
        out.items.append(item)
        originals[rowid] = conv
        used[rowid] = f
        out.needles |= needles(conv, pairs, region)
    _drop_unrecognised(out, originals, used)
    covered = set(pairs)
    out.linked = [x for x in subjectlinks.linked(v.conn, subject)
                  if (x.kind, x.value) not in covered]
    out.held = holds.covering(v.conn, v.key, [i.conv for i in out.items])
    return out


def _attachments(conv: dict[str, Any]) -> list[str]:
    return [a["sha256"] for msg in conv["messages"] for a in msg.get("attachments") or ()
            if isinstance(a.get("sha256"), str)]


def _drop_unrecognised(p: Plan, originals: dict[int, dict[str, Any]],
                       filters: dict[int, tombstones.Filter]) -> None:
    """Redacted copies ingest would not make alike are removed whole (and tombstoned so).

    Two checks: the copy holds no needle (a form the filter does not
    recognise), and the ingest hook, given the original as an old bundle
    would bring it, makes the very same copy (its cheap first look could
    otherwise pass over a form :meth:`Filter.decide` finds, and a rebuild
    would bring the original back).
    """
    pattern = needle_pattern(p.needles)
    for item in p.redacted:
        conv = originals[item.conv]
        leftover = pattern is not None and pattern.search(canonical.dumps(item.redacted))
        if leftover or _at_ingest(filters[item.conv], conv) != item.redacted:
            item.action, item.redacted, item.unrecognised = "drop", None, True
            item.attachments = _attachments(conv)


def _at_ingest(f: tombstones.Filter, conv: dict[str, Any]) -> Any:
    """What the ingest hook does with ``conv``: True (left out), False, or a copy."""
    from vault.recordidentifiers import participant_identifiers, text_mentions

    people = [(k, v, p["id"]) for p in conv["participants"]
              for k, v in participant_identifiers(p, f.region)]
    if isinstance(conv.get("customer_id"), str) and conv["customer_id"]:
        people.append(("customer_id", conv["customer_id"], None))
    mentions = [text_mentions("\n".join([m["text"], *[
        a["text"] for a in m.get("attachments") or ()
        if isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"]]]), f.region)
        for m in conv["messages"]]
    return f(conv, people, mentions)


def needles(conv: dict[str, Any], pairs: list[tuple[str, str]],
            region: str | None) -> set[bytes]:
    """The subject's identifiers as written in ``conv``, to look for in the files afterwards.

    Every string of the record is read (:mod:`vault.redaction`, loose digit
    runs and encoded forms included), participants' contact fields as given.
    """
    wanted = {val for _, val in pairs}
    found = {val for k, val in pairs if k in ("email", "phone") and len(val) >= 6}
    for text, _ in redaction.strings(conv):
        for span in redaction.find(text, region, loose=True):
            if span.value in wanted:
                found.add(text[span.start:span.end])
    for p in conv["participants"]:
        for key in ("email", "phone"):
            raw = p.get(key)
            if isinstance(raw, str) and (identifiers.normalise_email(raw) in wanted or
                                         identifiers.normalise_phone(raw, region) in wanted):
                found.add(raw)
    return {s.strip().encode("utf-8") for s in found if len(s.strip()) >= 6}
