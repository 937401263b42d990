"""Subject search: every conversation a person took part in or is mentioned in, and why.

A :class:`Subject` is what a DPO knows about a person: e-mail addresses,
phone numbers, names, platform user ids (``platform:id``), customer ids.
Each is normalised exactly as ingest normalised what it stored
(:mod:`vault.identifiers`: e-mail case-folded, phone in E.164 from any
written form with the vault's region, "UK" taken as "GB"), then looked up in
the store's indexes, never by reading messages:

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
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from vault import identifiers, timestamps
from vault.errors import UsageError

#: how the CLI names each identifier kind in reasons
NOUN = {"email": "e-mail", "phone": "phone", "phone_unparsed": "phone digits",
         "customer_id": "customer id", "platform_id": "platform id", "name": "name"}
_CHUNK = 500
#: digits a number that does not parse must have to be looked up as such (E.164: 15)
MIN_DIGITS, MAX_DIGITS = 6, 17


#: said when a number that is no valid one finds nothing: message text indexes valid numbers
_TEXT_FORM = ("in message text only valid numbers are indexed: 'chatvault search' with the "
              "digits as written there finds other forms")


@dataclass
class Subject:
    """The normalised identifiers of one person (see :meth:`parse`)."""

    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    platform_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    #: numbers given that are not possible phone numbers, as their digits: the
    #: store keeps such a number on a participant the same way (``phone_unparsed``)
    phone_digits: list[str] = field(default_factory=list)
    #: what the person should know about how their input was read
    notes: list[str] = field(default_factory=list, compare=False)
    #: said only when nothing exact is found (fictional 07700 900xxx are "not valid" too)
    doubts: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def parse(cls, *, emails: Iterable[str] = (), phones: Iterable[str] = (),
              names: Iterable[str] = (), ids: Iterable[str] = (),
              customer_ids: Iterable[str] = (), region: str | None = None) -> "Subject":
        """Normalise what a person typed; UsageError names what cannot be used.

        The message never repeats the value (it may be personal data that
        would end up in a shell log or a ticket); it says which option.
        """
        out = cls()
        emails, phones, names, ids = list(emails), list(phones), list(names), list(ids)
        for n, text in enumerate(emails, 1):
            email = identifiers.normalise_email(text)
            if email is None:
                raise UsageError(f"{_which('--email', n, emails)} is not an e-mail address")
            _add(out.emails, email)
        for n, text in enumerate(phones, 1):
            out._add_phone(text, region, _which("--phone", n, phones))
        for n, text in enumerate(names, 1):
            key = identifiers.name_key(text)
            if not key:
                raise UsageError(f"{_which('--name', n, names)} is empty")
            _add(out.names, key)
        for n, text in enumerate(ids, 1):
            platform, _, value = text.strip().partition(":")
            if not platform or not value:
                raise UsageError(f"{_which('--id', n, ids)}: expected PLATFORM:ID, "
                                 "e.g. slack:U024BE7LH")
            _add(out.platform_ids, f"{platform.lower()}:{value}")
            if platform.lower() == "telegram" and value.isdigit():
                # Telegram's exports write a user as from_id 'user<id>'; people know the number
                _add(out.platform_ids, f"telegram:user{value}")
        for text in customer_ids:
            if text.strip():
                _add(out.customer_ids, text.strip())
        if out.empty():
            raise UsageError("give at least one identifier: --email, --phone, --name, --id "
                             "or --customer-id")
        return out

    def _add_phone(self, text: str, region: str | None, which: str) -> None:
        """A number in E.164, else (a participant's number may be stored so) its digits."""
        phone = identifiers.normalise_phone(text, region)
        if phone is not None:
            _add(self.phones, phone)
            if not identifiers.is_valid_phone(phone):
                # possible but not valid: often a foreign number read with our region
                written_whole = text.strip().startswith(("+", "00"))
                how = "" if written_whole else f" with region {region}"
                advice = ("no country assigns it" if written_whole else "if it belongs to "
                          "another country, write it with + and its country code")
                self.doubts.append(f"{which} was read{how} as {phone}, which is not a valid "
                                   f"number ({advice}); {_TEXT_FORM}")
            return
        written = unicodedata.normalize("NFKC", text or "").strip()
        digits = re.sub(r"\D", "", written)
        international = written.startswith(("+", "00"))
        # Without a region a national number is not invalid but unknown: which
        # country? Looking its digits up could say "nothing held" falsely.
        if not (region or international) or not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
            hint = "" if region else " (no phone region is configured: write it with +)"
            raise UsageError(f"{which} is not a possible phone number{hint}")
        if written.startswith("00"):
            digits = digits[2:]
        _add(self.phone_digits, digits)
        self.notes.append(f"{which} is not a possible phone number: looked up as the digits "
                          "written, as a number that did not parse is stored (needs review)")
        self.doubts.append(_TEXT_FORM)

    def empty(self) -> bool:
        return not (self.emails or self.phones or self.names or self.platform_ids
                    or self.customer_ids or self.phone_digits)

    def exact(self) -> list[tuple[str, str]]:
        """(kind, value) of the identifiers that identify the person exactly."""
        return ([("email", e) for e in self.emails] + [("phone", p) for p in self.phones]
                + [("platform_id", i) for i in self.platform_ids]
                + [("customer_id", c) for c in self.customer_ids])

    def unparsed_forms(self) -> list[str]:
        """Digit strings this person's numbers would be stored as, without a region."""
        out: list[str] = list(self.phone_digits)
        if not self.phones:
            return out  # no tombstones nor phonenumbers imported for an e-mail lookup
        from vault.tombstones import phone_digit_forms

        for phone in self.phones:
            for digits in phone_digit_forms(phone):
                _add(out, digits)
        return out

    def pairs(self) -> list[tuple[str, str]]:
        return self.exact() + self.digit_pairs() + [("name", n) for n in self.names]

    def digit_pairs(self) -> list[tuple[str, str]]:
        """The numbers given that did not parse, as a case or erasure stores them."""
        return [("phone_unparsed", d) for d in self.phone_digits]

    def bucket(self, kind: str) -> list[str]:
        """Where a stored (kind, value) of a case or an erasure goes back to."""
        return {"email": self.emails, "phone": self.phones, "name": self.names,
                "platform_id": self.platform_ids, "customer_id": self.customer_ids,
                "phone_unparsed": self.phone_digits}[kind]


def _which(option: str, n: int, given: list[str]) -> str:
    """Names one value of an option without repeating it (it is personal data)."""
    return f"the {option} value" if len(given) == 1 else f"{option} value {n} of {len(given)}"


def _add(bucket: list[str], value: str) -> None:
    if value not in bucket:
        bucket.append(value)


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
