"""Tombstones: keyed hashes of erased identifiers, and the one filter that applies them.

When a subject's data is erased, a tombstone records a keyed hash of each
identifier (never the identifier itself) so that an old bundle, a rebuild or
a restore cannot bring the data back. :class:`Filter` is the only place that
decides what a tombstone does to a conversation; ingest, rebuild, restore
and erasure itself all call it:

* **left out** when the conversation is tombstoned as a whole (kind
  ``conversation``, value ``<source>/<conversation_id>``), when its
  ``customer_id`` is, when its ``conversation_id`` is written with a
  tombstoned identifier, or when a tombstoned identifier (e-mail, phone,
  customer id, platform id, or written in its id) belongs to a participant
  whose role is ``customer``: the subject was the customer here;
* **kept, redacted** when a tombstoned identifier is only written in it
  or belongs to a participant who is not the customer (an agent). Every
  string of the record is rewritten, at any depth and keys included
  (message text, attachment alt text, titles, Telegram entities, HTML
  bodies, Slack blocks...; :mod:`vault.redaction` finds e-mail addresses
  and phone numbers also as digit runs and URL- or HTML-encoded): the
  identifier becomes ``[erased e-mail]`` / ``[erased phone]``, or, in an
  id other fields refer to, a pseudonym made with the key
  (``[erased e-mail 3fa9c2d1e0]``) so references stay whole. That
  participant's contact fields, session and extra are removed, its name
  becomes ``[erased]`` wherever written, and attachments it sent are dropped;
  a platform id written bare in an ``extra`` (a Slack channel's member list,
  :mod:`vault.extraids`) becomes a pseudonym too;
* **kept as is** otherwise.

Attachments erased with a subject are tombstoned too (kind ``attachment``,
value the content's SHA-256), so a replayed bundle does not store them again.
The same logic serves Art. 18 restrictions (:mod:`vault.restriction`), with
its own hashes: a restricted subject's conversations are hidden from output,
mentions of them redacted.

The identifier key the hashes are made with is :mod:`vault.identifierkey`'s.

Values are hashed in their normal form (:func:`normalise`): an e-mail
case-folded, a phone number in E.164.
"""

from __future__ import annotations

import copy
import functools
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vault import extraids, identifiers, redaction, timestamps
from vault.errors import ChatvaultError, UsageError
# The key and its purposes, where every module has always found them.
from vault.identifierkey import (KEY_FILE, PURPOSE_AUDIT, PURPOSE_HOLD,  # noqa: F401
                                 PURPOSE_PSEUDONYM, PURPOSE_RESTRICTION, PURPOSE_TOMBSTONE,
                                 IdentifierKey, load_key)

KINDS = ("email", "phone", "phone_unparsed", "customer_id", "platform_id", "name",
         "conversation", "attachment")
#: participant identifiers that make a customer "the subject" (names never do)
DECISIVE = ("email", "phone", "phone_unparsed", "customer_id", "platform_id")
_MARKS = {"email": "[{} e-mail]", "phone": "[{} phone]", "phone_unparsed": "[{} phone]"}


def normalise(kind: str, value: str, region: str | None = None) -> str:
    """The form an identifier is hashed in; UsageError when it cannot be one."""
    if kind not in KINDS:
        raise UsageError(f"unknown identifier kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "email":
        out = identifiers.normalise_email(value)
    elif kind == "phone":
        out = identifiers.normalise_phone(value, region)
    elif kind == "name":
        out = identifiers.name_key(value)
    elif kind == "phone_unparsed":
        out = "".join(ch for ch in value if ch.isdigit())
    else:
        out = value.strip()
    if not out:
        raise UsageError(f"not a usable {kind}: give it in full (nothing is logged)")
    return out


@functools.lru_cache(maxsize=4096)
def phone_digit_forms(e164: str) -> tuple[str, ...]:
    """Digit strings a number may be stored under when written without ``+``.

    With no region configured, a number written without a country code is
    kept as ``phone_unparsed`` digits: all of them (``447700900123``,
    ``7700900123``, ``07700900123``) are tombstoned with the number.
    """
    import phonenumbers

    out = [e164.lstrip("+")]
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return tuple(out)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    for digits in (phonenumbers.national_significant_number(number),
                   re.sub(r"\D", "", national)):
        if digits and digits not in out:
            out.append(digits)
    return tuple(out)


def conversation_value(source: str, conversation_id: str) -> str:
    return f"{source}/{conversation_id}"


def add(conn: sqlite3.Connection, key: IdentifierKey, kind: str, value: str,
        origin: str | None = None) -> bool:
    """Record a tombstone for an already normalised value; False if it existed."""
    digest = key.hash(PURPOSE_TOMBSTONE, kind, value)
    cur = conn.execute("INSERT OR IGNORE INTO tombstones (kind, hash, created_at, origin) "
                       "VALUES (?, ?, ?, ?)", (kind, digest, timestamps.now_utc(), origin))
    return cur.rowcount == 1


# -- the filter --------------------------------------------------------------------------

#: where a string is an id other fields refer to: replaced by a pseudonym, never a mark
_ID_PATHS = {("participants", "id"), ("messages", "id"), ("messages", "from"),
             ("messages", "reply_to")}
#: participant fields the Loader's identifiers hold already, normalised
_PEOPLE_KEYS = frozenset(("role", "email", "phone", "customer_id", "platform_ids"))
#: fields of the model that never hold an identifier (timestamps, enums, flags)
_PLAIN_KEYS = frozenset(("at", "started_at", "ended_at", "updated_at", "edited_at",
                         "at_offset", "started_at_offset", "ended_at_offset",
                         "updated_at_offset", "edited_at_offset", "direction", "visibility",
                         "content_type", "system", "deleted", "edited", "bot", "ai",
                         "delivery", "role", "source", "platform"))


def _shape(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """``("messages", 3, "attachments", 0, "text")`` -> ``("messages", "attachments", "text")``."""
    return tuple(p for p in path if not isinstance(p, int))


@dataclass
class Decision:
    """What a filter does to one conversation: ``keep``, ``redact`` or ``drop``."""

    action: str
    conversation: dict[str, Any] | None = None
    redactions: list[dict[str, Any]] = field(default_factory=list)
    attachments_dropped: list[str] = field(default_factory=list)


class Filter:
    """Tombstones (or, with ``purpose``/``hashes``, restrictions) applied to records.

    Loads the (kind, hash) pairs once; with none at all it costs nothing per
    conversation. ``region`` is the phone region the records are read with
    (numbers written without ``+``). Every string of a record is looked at
    (:mod:`vault.redaction`): message text, attachment alt text, titles,
    ``extra`` objects at any depth and their keys.
    """

    label = "erased"

    def __init__(self, conn: sqlite3.Connection | None, key: IdentifierKey, source: str,
                 region: str | None = None, *, purpose: str = PURPOSE_TOMBSTONE,
                 hashes: Iterable[tuple[str, str]] | None = None) -> None:
        self.key, self.source, self.region, self.purpose = key, source, region, purpose
        if hashes is None:
            assert conn is not None
            hashes = conn.execute("SELECT kind, hash FROM tombstones")
        self.hashes = {(k, h) for k, h in hashes}
        self._seen: dict[tuple[str, str], bool] = {}

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def covers(self, kind: str, value: str) -> bool:
        known = self._seen.get((kind, value))
        if known is None:
            if len(self._seen) > 100_000:
                self._seen.clear()  # bounded: one bundle's identifiers, roughly
            known = (kind, self.key.hash(self.purpose, kind, value)) in self.hashes
            self._seen[(kind, value)] = known
        return known

    def blob_erased(self, sha256: str) -> bool:
        """Attachment content erased with a subject: not to be stored again."""
        return bool(self.hashes) and self.covers("attachment", sha256)

    # The hook :class:`vault.upsert.Loader` calls: True to leave the conversation
    # out, a redacted copy to store instead, False to store it as it is.
    def __call__(self, conv: dict[str, Any], people: list[tuple[str, str, Any]],
                 mentions: list[list[tuple[str, str]]]) -> bool | dict[str, Any]:
        if not self.hashes:
            return False
        touched = (any(self.covers(k, v) for k, v, _ in people if k != "name")
                   or any(self.covers(k, v) for found in mentions for k, v in found)
                   or self.covers("conversation", conversation_value(
                       self.source, conv["conversation_id"]))
                   or self.written_anywhere(conv) or self._extra_ids(conv))
        if not touched:
            return False
        decision = self.decide(conv)
        if decision.action == "drop":
            return True
        if decision.action == "redact" and decision.conversation is not None:
            return decision.conversation
        return False

    def written_anywhere(self, conv: dict[str, Any]) -> bool:
        """Could a covered identifier be written where ingest's mentions do not look?

        Over-inclusive and cheap (:func:`vault.redaction.candidates`, no phone
        parsing): a yes only sends the conversation to :meth:`decide`. Fields
        that never hold one (timestamps, roles, flags) and the participants'
        contact fields (their identifiers are checked already) are skipped.
        """
        found: list[str] = []

        def take(value: Any) -> None:
            if type(value) is str:  # most values: no generator for them
                found.append(value)
            else:
                found.extend(redaction.texts(value))

        for key, value in conv.items():
            if key == "participants" or key == "messages":
                skip = _PEOPLE_KEYS if key == "participants" else _PLAIN_KEYS
                for item in value:
                    for k, v in item.items():
                        if k not in skip:
                            take(v)
            elif key not in _PLAIN_KEYS:
                take(value)
        # One pass over all of it; no e-mail or digit run crosses the NUL between strings.
        joined = "\x00".join(found)
        return any(self.covers(k, v) for k, v in redaction.candidates(joined))

    def _extra_ids(self, conv: dict[str, Any]) -> bool:
        """A covered platform id written bare in an ``extra`` (:mod:`vault.extraids`)?"""
        name = extraids.platform(conv)
        return name is not None and any(self.covers("platform_id", f"{name}:{s}")
                                        for s in extraids.strings(conv))

    def apply(self, conv: dict[str, Any]) -> dict[str, Any] | None:
        """The conversation as it may be stored or shown: None when left out."""
        decision = self.decide(conv)
        return None if decision.action == "drop" else decision.conversation

    def decide(self, conv: dict[str, Any]) -> Decision:
        """The full decision for one conversation (see the module docstring)."""
        if not self.hashes:
            return Decision("keep", conv)
        if self.covers("conversation", conversation_value(self.source,
                                                          conv["conversation_id"])):
            return Decision("drop")
        cid = conv.get("customer_id")
        if isinstance(cid, str) and cid and self.covers("customer_id", cid):
            return Decision("drop")
        # A conversation named by the identifier cannot be kept under another name.
        if self._spans(conv["conversation_id"]):
            return Decision("drop")
        from vault.recordidentifiers import participant_identifiers

        marked: set[str] = set()
        for p in conv["participants"]:
            found = [(k, v) for k, v in participant_identifiers(p, self.region)
                     if k in DECISIVE]
            if any(self.covers(k, v) for k, v in found) or self._spans(p["id"]):
                if p["role"] == "customer":
                    return Decision("drop")
                marked.add(p["id"])
        return self._redact(conv, marked)

    def _spans(self, text: str) -> list[identifiers.Span]:
        return [s for s in redaction.find(text, self.region, loose=True)
                if self.covers(s.kind, s.value)]

    def _names(self, conv: dict[str, Any], marked: set[str]) -> re.Pattern[str] | None:
        """The names of marked participants as written anywhere (whole words, any case)."""
        names = {p["name"].strip() for p in conv["participants"] if p["id"] in marked
                 and isinstance(p.get("name"), str) and len(p["name"].strip()) >= 3}
        if not names:
            return None
        alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)

    def _redact(self, conv: dict[str, Any], marked: set[str]) -> Decision:
        out = Decision("keep", conv)
        names = self._names(conv, marked)
        counts: dict[tuple[str, Any], int] = {}
        platform = extraids.platform(conv)

        def one(text: str, path: tuple[Any, ...]) -> str:
            if (platform and extraids.in_extra(path) and extraids.shaped(text)
                    and self.covers("platform_id", f"{platform}:{text}")):
                new, n = self._mark("platform_id", text, True), 1  # a member list's id
            else:
                new, n = self._rewrite(text, _shape(path) in _ID_PATHS, names)
            if n:
                where = (("message", conv["messages"][path[1]]["id"])
                         if path[:1] == ("messages",) and len(path) > 1
                         else ("field", path[0] if path else "key"))
                counts[where] = counts.get(where, 0) + n
            return new

        new = redaction.rewrite(conv, one)
        out.redactions += [{"message_id" if k == "message" else "field": v, "count": n}
                           for (k, v), n in counts.items()]
        if new is conv and not marked:
            return out
        new = copy.deepcopy(new)
        # Lists keep their order: the originals say who was marked, even where
        # an id itself was rewritten.
        for old, msg in zip(conv["messages"], new["messages"]):
            if old.get("from") in marked and msg.get("attachments"):
                out.attachments_dropped += [a["sha256"] for a in msg["attachments"]
                                            if isinstance(a.get("sha256"), str)]
                msg.pop("attachments")
        for old, p in zip(conv["participants"], new["participants"]):
            if old["id"] in marked:
                for key in ("email", "phone", "customer_id", "platform_ids", "session",
                            "extra"):
                    p.pop(key, None)
                p["name"] = f"[{self.label}]"
                out.redactions.append({"participant": p["id"]})
        out.action, out.conversation = "redact", new
        return out

    def _rewrite(self, text: str, is_id: bool, names: re.Pattern[str] | None
                 ) -> tuple[str, int]:
        """One string with covered identifiers (and marked names) replaced; how many.

        An id (a participant's, a message's, or a reference to one) gets a
        pseudonym made with the key, the same wherever the id is written,
        so references stay whole and two erased ids never collide.
        """
        spans = self._spans(text)
        n = len(spans)
        if spans:
            text = redaction.replace(text, spans, lambda s: self._mark(s.kind, s.value, is_id))
        if names is not None:
            text, k = names.subn(lambda m: self._mark("name", identifiers.name_key(m.group(0)),
                                                      is_id), text)
            n += k
        return text, n

    def _mark(self, kind: str, value: str, is_id: bool) -> str:
        mark = _MARKS.get(kind, "[{}]").format(self.label)
        if not is_id:
            return mark
        return f"{mark[:-1]} {self.key.hash(PURPOSE_PSEUDONYM, kind, value)[:10]}]"

    def redact_text(self, text: str) -> tuple[str, int]:
        """``text`` with every covered e-mail address and phone number replaced."""
        return self._rewrite(text, False, None)


def region_of_bundle(conn: sqlite3.Connection, home: Path, bundle_row: int,
                     default: str | None, cache: dict[int, str | None] | None = None
                     ) -> str | None:
    """The phone region a stored conversation was read with (its bundle's, else default).

    The bundle's header (read without any key) carries the exporter's
    region; a missing archive falls back to the vault's default.
    """
    if cache is not None and bundle_row in cache:
        return cache[bundle_row]
    from vault import bundle

    found = default
    row = conn.execute("SELECT archive_path FROM bundles WHERE id = ?", (bundle_row,)).fetchone()
    if row and row[0] and (Path(home) / row[0]).is_file():
        try:
            context = bundle.inspect(Path(home) / row[0])["meta"].get("context") or {}
            given = context.get("phone_region")
            if isinstance(given, str) and given.strip():
                found = identifiers.region(given)
        except (ChatvaultError, ValueError, OSError):
            found = default  # an unreadable header: the vault's default region
    if cache is not None:
        cache[bundle_row] = found
    return found
