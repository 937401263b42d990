"""The fast path of record validation: canonical lines checked in C, not in Python.

:func:`vault.records.canonical_line` is the precise validator: it parses a
line into dicts and walks them in Python, which costs about four times the
parsing itself. Nearly every line it sees is already canonical (the exporter
writes canonical JSONL, the vault reads what the exporter sealed), so this
module answers one narrower question much faster: *is this line canonical
and valid, with nothing to change?* When the answer is yes, the line itself
is the canonical form and :func:`check_line` returns its
:class:`~vault.records.Summary`; otherwise it returns None and the caller
runs the precise validator, which canonicalises or raises the exact error.

How a yes is proven, in three steps:

1. msgspec decodes the line into the Structs below, which check in C what
   the precise validator checks in Python: required fields, exact types
   (stricter where it costs nothing: a ``bool`` where any value would do),
   roles and directions, id lengths, list sizes, attachment hashes. Unknown
   fields, nulls where the precise path would drop a key, and anything else
   unexpected make decoding fail: the precise path takes over.
2. Encoding the Structs again must give the line back byte for byte. Fields
   are declared in sorted order and msgspec writes strings exactly as orjson
   does (every code point was compared), so an equal encoding means sorted
   keys, compact separators and canonical strings. Values the Structs do not
   look into (``extra``, ``tags``...) are kept raw and each must be
   canonical by :mod:`vault.canonical` itself.
3. Per conversation, in Python but over whole lists: timestamps in the plain
   canonical shape ``YYYY-MM-DDTHH:MM:SS[.f]Z`` with ASCII digits and each a
   real time :func:`vault.timestamps.parse` accepts (no month 13, year 0 or
   leap second), unique participant and message ids, every sender a
   participant.

Being stricter than the precise path only costs speed; accepting something
the precise path would refuse or change would be a bug, which
``tests/test_recordschema.py`` hunts for by comparing both on generated
records, valid and invalid.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson

from vault.records import MAX_ID_CHARS, MAX_ITEMS, MAX_RECORD_BYTES, Summary
from vault.timestamps import order_key

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType
Raw = msgspec.Raw

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
#: within int64 (msgspec's bound checks); larger sizes take the precise path
Size = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Stamp = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                            r"[0-9]{2}(?:\.[0-9]{0,5}[1-9])?Z\Z")]
Items = msgspec.Meta(max_length=MAX_ITEMS)
Roles = Literal["customer", "agent", "bot", "system"]
Directions = Literal["inbound", "outbound", "internal"]
Str = str | None  # fields the precise path allows to be null

# JSON name -> type. Required fields are named in _REQUIRED; every other
# field is optional (absent is not null: a null where the precise path would
# drop the key fails the type). The precise path checks fewer types than
# these; being stricter only sends a line to it.
_MESSAGE: dict[str, Any] = {
    "ai": bool, "at": str, "at_offset": str, "bot": bool, "content_type": str,
    "deleted": bool, "delivery": str, "direction": Directions, "edited": bool,
    "forwarded_from": str, "from": str | None, "id": Id, "reply_to": str, "system": bool,
    "text": str, "visibility": Literal["public", "private"]}
_PARTICIPANT: dict[str, Any] = {
    "customer_id": Str, "email": Str, "id": Id, "name": Str, "phone": Str, "role": Roles}
_CONVERSATION: dict[str, Any] = {
    "channel": str, "conversation_id": Id, "customer_id": str, "ended_at": str,
    "ended_at_offset": str, "platform": str, "source": Str, "started_at": str,
    "started_at_offset": str, "status": str, "tags": list[str], "title": str,
    "updated_at": str, "updated_at_offset": str}
_ATTACHMENT: dict[str, Any] = {
    "name": str, "omitted": bool, "sha256": Sha256 | None, "size": Size | None,
    "text": str, "type": str, "url": str}
# what only the full schema has: each needs a look in Python (_rare_ok)
_RARE_MESSAGE: dict[str, Any] = {"edited_at": Stamp, "edited_at_offset": str, "extra": Raw}
_RARE_PARTICIPANT: dict[str, Any] = {"extra": Raw, "platform_ids": Raw, "session": Raw}
_RARE_CONVERSATION: dict[str, Any] = {"extra": Raw, "tags": Raw}
_REQUIRED = {"Message": {"at", "from", "id", "text"}, "Participant": {"id", "role"},
             "Conversation": {"conversation_id", "started_at", "participants", "messages"}}


def _struct(name: str, fields: dict[str, Any]) -> Any:
    """A Struct whose fields are declared in sorted JSON-name order (canonical order)."""
    required = _REQUIRED.get(name, set())
    spec = [(key, kind) if key in required else (key, kind | Unset, UNSET)
            for key, kind in sorted(fields.items())]
    return msgspec.defstruct(name, spec, kw_only=True, forbid_unknown_fields=True, gc=False)


def _schema(full: bool, dicts: bool = False) -> Any:
    """The lean or the full schema for lines; with ``dicts``, the one for records in memory.

    Records in memory are never encoded again (their canonical bytes come
    from :mod:`vault.canonical`), so their free-form values need no raw
    check; attachments, whose lists msgspec would also accept as tuples, are
    left to the precise path.
    """
    def rare(part: dict[str, Any]) -> dict[str, Any]:
        if not full:
            return {}
        return {k: Any if v is Raw else v for k, v in part.items()} if dicts else part

    attachment = _struct("Attachment", _ATTACHMENT)
    listed = Annotated[list[attachment], Items] | None  # type: ignore[valid-type]
    message = _struct("Message", {
        **_MESSAGE, **rare(_RARE_MESSAGE), **({} if dicts else rare({"attachments": listed}))})
    participant = _struct("Participant", {**_PARTICIPANT, **rare(_RARE_PARTICIPANT)})
    return _struct("Conversation", {
        **_CONVERSATION, **rare(_RARE_CONVERSATION),
        "messages": Annotated[list[message], Items],  # type: ignore[valid-type]
        "participants": Annotated[list[participant], Items]})  # type: ignore[valid-type]


LeanConversation = _schema(full=False)
Conversation = _schema(full=True)
DictConversation = _schema(full=True, dicts=True)
_lean = msgspec.json.Decoder(LeanConversation).decode
_full = msgspec.json.Decoder(Conversation).decode
_encode = msgspec.json.Encoder().encode
_PLAIN_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                       r"(?:\.[0-9]{0,5}[1-9])?Z").fullmatch
#: ``YYYY-MM-DDTHH:MM:SSZ|`` with every digit made 0: see :func:`_all_plain`
_TEMPLATE = b"0000-00-00T00:00:00Z|"
_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_PARSE = datetime.fromisoformat
_AT, _ID, _SENDER = attrgetter("at"), attrgetter("id"), attrgetter("from")


def _raw_canonical(raw: Any) -> bool:
    if raw is UNSET:
        return True
    data = bytes(raw)
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS) == data
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def _all_plain(stamps: list[str]) -> bool:
    """Every timestamp canonical (:func:`vault.timestamps.is_canonical`), all at once.

    The common shape ``YYYY-MM-DDTHH:MM:SSZ`` is checked on the joined
    bytes: digits made ``0`` must give the template repeated, separator
    included, which pins every item to exactly that shape (an item holding
    the separator would add one more than the template has). Anything else
    (fractions of a second) is matched one by one.
    """
    joined = ("|".join(stamps) + "|").encode()
    if joined.translate(_ZEROS) == _TEMPLATE * len(stamps):
        if _surely_real(joined, len(stamps)):
            return True
    elif not all(map(_PLAIN_TS, stamps)):
        return False
    # the shape is UTC, so a time that parses is in range (vault.timestamps)
    try:
        deque(map(_PARSE, stamps), maxlen=0)
    except ValueError:
        return False
    return True


def _lanes(spec: list[tuple[int, bytes]], top: bool) -> bytes:
    """One stamp's worth of a mask: ``spec`` gives (offset, bytes) of each lane."""
    out = bytearray(len(_TEMPLATE))
    for at, value in spec:
        out[at:at + len(value)] = b"\x80" + bytes(len(value) - 1) if top else value
    return bytes(out)


def _below(bound: bytes) -> bytes:
    """Added to a lane of digits: its top bit ends up set exactly when the lane > ``bound``."""
    size = len(bound)
    return ((0x80 << 8 * (size - 1)) - int.from_bytes(bound, "big") - 1).to_bytes(size, "big")


def _from(bound: bytes) -> bytes:
    """Added to a lane of digits: its top bit ends up set exactly when the lane >= ``bound``."""
    size = len(bound)
    return ((0x80 << 8 * (size - 1)) - int.from_bytes(bound, "big")).to_bytes(size, "big")


# (offset, highest or lowest text) of each field of ``YYYY-MM-DDTHH:MM:SSZ``; a day
# past 28 depends on the month and year and is left to the exact check
_HIGHEST = [(5, b"12"), (8, b"28"), (11, b"23"), (14, b"59"), (17, b"59")]
_LOWEST = [(0, b"0001"), (5, b"01"), (8, b"01")]
_MASKS = ((_lanes([(at, _below(b)) for at, b in _HIGHEST], False), _lanes(_HIGHEST, True)),
          (_lanes([(at, _from(b)) for at, b in _LOWEST], False), _lanes(_LOWEST, True)))


@functools.lru_cache(maxsize=256)
def _masks(count: int) -> tuple[int, int, int, int]:
    (add_hi, top_hi), (add_lo, top_lo) = _MASKS
    return tuple(int.from_bytes(m * count, "big")  # type: ignore[return-value]
                 for m in (add_hi, top_hi, add_lo, top_lo))


def _surely_real(joined: bytes, count: int) -> bool:
    """Every stamp of the plain shape a real time, by arithmetic on all of them at once.

    ``joined`` read as one big integer: each field is a lane of ASCII
    digits, and adding a constant to a lane sets its top bit exactly when
    the lane is above a bound (never carrying out of it: digits are at most
    0x39). Bounds in text order are bounds in value, so one addition checks
    every month, day, hour, minute and second against its highest value and
    another against its lowest. False only says "look closer": days 29 to
    31 and anything out of range go to :meth:`datetime.fromisoformat`.
    """
    add_hi, top_hi, add_lo, top_lo = _masks(count)
    value = int.from_bytes(joined, "big")
    return (value + add_hi) & top_hi == 0 and (value + add_lo) & top_lo == top_lo


def _rare_ok(conv: Any) -> tuple[bool, int]:
    """Raw values canonical (the full schema only); attachments counted."""
    raws = [conv.extra, conv.tags]
    for p in conv.participants:
        raws += [p.extra, p.platform_ids, p.session]
    attachments = 0
    for m in conv.messages:
        raws.append(m.extra)
        if m.attachments:
            attachments += len(m.attachments)
    return all(_raw_canonical(r) for r in raws if r is not UNSET), attachments


def check_line(line: bytes) -> Summary | None:
    """The summary of a canonical, valid line; None when the precise path must decide.

    None never means invalid: only that this path cannot vouch for the line.
    """
    if len(line) > MAX_RECORD_BYTES:
        return None
    lean = True
    try:
        conv: Any = _lean(line)
    except msgspec.ValidationError:
        lean = False
        try:
            conv = _full(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
    except msgspec.DecodeError:
        return None
    if _encode(conv) != line:
        return None
    attachments = 0
    if not lean:
        ok, attachments = _rare_ok(conv)
        if not ok:
            return None
    return _summary(conv, attachments)


def check_dict(conv: Any) -> Summary | None:
    """The summary of a valid record built in memory, when validating would change nothing.

    :func:`vault.records.validate` canonicalises timestamps in place; a
    record this path vouches for has nothing to canonicalise. msgspec takes
    a tuple or a set where a list is declared, so the two lists the precise
    path insists on are checked here.
    """
    try:
        checked = msgspec.convert(conv, DictConversation)
    except msgspec.ValidationError:
        return None
    if type(conv["participants"]) is not list or type(conv["messages"]) is not list:
        return None
    return _summary(checked, 0)


def _summary(conv: Any, attachments: int) -> Summary | None:
    """The checks the schema cannot make: unique ids, senders, timestamps."""
    messages, people = conv.messages, conv.participants
    ids = {p.id for p in people}
    senders = set(map(_SENDER, messages))
    senders.discard(None)
    if len(ids) != len(people) or not senders <= ids:
        return None
    if len(set(map(_ID, messages))) != len(messages):
        return None
    ats = list(map(_AT, messages))
    first, last = ((min(ats, key=order_key), max(ats, key=order_key)) if ats
                   else (None, None))
    ats.append(conv.started_at)
    if conv.ended_at is not UNSET:
        ats.append(conv.ended_at)
    if conv.updated_at is not UNSET:
        ats.append(conv.updated_at)
    if not _all_plain(ats):
        return None
    source = None if conv.source is UNSET else conv.source
    return Summary(conv.conversation_id, len(messages), len(people), attachments, first, last,
                   source)
