"""Telegram Desktop JSON exports: one chat (``result.json``) or the full export.

A single-chat export is one object with ``name``, ``type``, ``id`` and
``messages``; the full export has ``chats.list`` (and ``left_chats.list``),
one conversation per chat, and ``personal_information`` naming the account
that exported.

Mapping. ``type: message`` entries are messages; ``type: service`` entries
(``actor``, ``action``, no ``from``) are system events with ``from: null``,
their action fields in ``extra`` and the actor listed as a participant.
``text`` may be a string or a list of strings and entity objects: the
pieces' text is joined exactly (entities stay in ``extra.text_entities``).
Times come from ``date_unixtime`` (UTC) when present, and the local
``date`` then gives ``at_offset``; with only ``date`` the source's
``timezone`` is used. ``edited``/``edited_unixtime`` give ``edited_at``,
``reply_to_message_id`` gives ``reply_to``, ``forwarded_from`` is kept.
``photo``/``file`` become attachments whether or not there is a caption:
``omitted`` when the export says the file was not included, hashed when the
file sits next to the JSON.

Roles: the exporting account (``personal_information``) is ``agent``; in a
personal chat the peer (``from_id == "user" + chat id``, or the sender
named as the chat) is ``customer`` (``bot`` in a bot chat) and the other
side ``agent`` (and their messages ``inbound``/``outbound``); when the peer
cannot be told, and in groups, everyone is ``customer``.

Odd fields never stop a read. A ``personal_information`` that is not an
object is reported and the export read without an owner; a ``chats`` or
``left_chats`` that is not an object, or whose ``list`` is not a list, is
reported as refused (its chats, if any, are not read) and the rest is read.
An edit time that cannot be read is reported and the message kept without
it; a ``file_size`` that is not a byte count stays in ``extra``; a message
id seen twice in a chat keeps both (``<id>#2``); an id too long for a
record is shortened (:func:`vault.sources.record_id`).

Folders. Every ``*.json`` of a folder is read: Telegram Desktop names an
export ``result.json`` (each in its own ``ChatExport_<date>`` folder), and
a copy saved under another name is read as well; a JSON file in the folder
that is not a Telegram export is reported and the rest is read. HTML
exports (``messages.html``) cannot be read and are reported.

Long chats. A chat too large for one record (``records.MAX_ITEMS``
messages or ``records.MAX_RECORD_BYTES`` bytes) becomes one conversation
per calendar month, ``<chat id>#YYYY-MM`` (:mod:`vault.sources.limits`).

Memory. The file is parsed as one JSON document (capped at
``MAX_JSON_BYTES``, 512 MiB): peak memory is about 6 times the file's size
(measured with ``sources convert``: a 108 MB ``result.json`` with 400,000
messages peaked at 0.64 GB, a 368 MB one with 1.5 million at 2.2 GB; so
about 3 GB at the cap). Streaming the ``messages`` array would not lower
the peak by much: a chat is built as records in memory before it is split.

Cannot map: delivery state, reactions beyond ``extra``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import (ReadOptions, as_object, capped, epoch_text, load_json,
                           local_file_digest, record_id, stable_id, unique_id)

DESCRIPTION = "Telegram Desktop JSON export (result.json: one chat or the full export)"
FOLDER_RULE = "*.json, as Telegram Desktop's result.json"
SPLIT_BY_MONTH = True

MAX_CHATS = 100_000
_MEDIA_FIELDS = ("photo", "file")
_MAPPED = {"id", "type", "date", "date_unixtime", "from", "from_id", "text", "edited",
           "edited_unixtime", "reply_to_message_id", "forwarded_from", "actor", "actor_id",
           "photo", "file", "mime_type", "file_name", "file_size", "media_type"}


def wants(path: Path) -> bool:
    """In a folder: every JSON file (Telegram Desktop names its exports result.json)."""
    return path.suffix.lower() == ".json"


def near_miss(path: Path) -> str | None:
    if path.suffix.lower() == ".html" and path.name.lower().startswith("messages"):
        return ("Telegram's HTML export cannot be read; export the chat again choosing "
                "'Machine-readable JSON'")
    return None


def _text(value: Any) -> str | None:
    """The text of a string or of a list of strings and entity objects."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    parts = []
    for piece in value:
        if isinstance(piece, str):
            parts.append(piece)
        elif isinstance(piece, dict) and isinstance(piece.get("text"), str):
            parts.append(piece["text"])
        else:
            return None
    return "".join(parts)


def _when(entry: dict[str, Any], key: str, tz: str | None) -> tuple[str, str | None]:
    """(UTC text, offset) of ``key`` (``date``/``edited``), preferring its unixtime."""
    local = entry.get(key)
    unix = entry.get(f"{key}_unixtime")
    naive = datetime.fromisoformat(local) if isinstance(local, str) else None
    if naive is not None and naive.tzinfo is not None:
        return timestamps.canonicalize(local)  # type: ignore[arg-type]
    if unix is not None:
        utc = epoch_text(unix)
        if naive is None:
            return utc, None
        delta = naive.replace(tzinfo=timestamps.UTC) - timestamps.parse(utc)
        if abs(delta) > timedelta(hours=14):
            return utc, None
        aware = timestamps.parse(utc).astimezone(timezone(delta))
        return utc, timestamps.format_offset(aware)
    if naive is None:
        raise timestamps.TimestampError(f"no {key} or {key}_unixtime")
    return timestamps.from_local(naive, tz)


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _attachments(entry: dict[str, Any], bases: list[Path]) -> list[dict[str, Any]]:
    out = []
    for key in _MEDIA_FIELDS:
        where = entry.get(key)
        if not isinstance(where, str):
            continue
        omitted = where.startswith("(")
        name = entry.get("file_name") if key == "file" else None
        found = None if omitted else local_file_digest(bases, where)
        size = entry.get("file_size")
        size_ok = isinstance(size, int) and not isinstance(size, bool) and size >= 0
        out.append(records.attachment(
            name=name if isinstance(name, str) and name else (
                None if omitted else Path(where).name),
            type=entry.get("mime_type"), omitted=True if omitted else None,
            sha256=found[0] if found else None,
            size=found[1] if found else (size if size_ok else None),
            extra=_compact({"field": key, "path": where, "media_type": entry.get("media_type"),
                            "file_size": None if size_ok else size})))
    return out


class _Chat:
    """Builds one conversation from one chat object."""

    def __init__(self, chat: dict[str, Any], owner: str | None, path: Path,
                 options: ReadOptions) -> None:
        self.chat, self.owner, self.path, self.options = chat, owner, path, options
        self.people: dict[str, dict[str, Any]] = {}
        self.ids: set[str] = set()  # message ids given out

    def person(self, pid: Any, name: Any) -> str:
        # an id too long for a record (no Telegram id is) is shortened, the same everywhere
        key = record_id(str(pid) if pid not in (None, "") else f"name:{name}")
        if key not in self.people:
            ids = {"telegram": str(pid)} if pid not in (None, "") else None
            self.people[key] = records.participant(
                key, "customer", name=name if isinstance(name, str) else None,
                platform_ids=ids)
        return key

    def message_id(self, raw: Any, n: int) -> str:
        """A message id unique in the chat: Telegram's, else ``n<index>``; one seen before
        (two exports merged by hand) gets ``#2``, ``#3``...; an over-long one is shortened."""
        return unique_id(record_id(str(raw)) if raw not in (None, "") else f"n{n}", self.ids)

    def assign_roles(self, messages: list[dict[str, Any]]) -> None:
        """Owner is agent; in a one-to-one chat the peer is customer (or bot), the rest agent."""
        kind, name = self.chat.get("type"), self.chat.get("name")
        peer = None
        if kind in ("personal_chat", "bot_chat"):
            peer = next((k for k in self.people if k == f"user{self.chat.get('id')}"), None)
            peer = peer or next((k for k, p in self.people.items() if p.get("name") == name
                                 and name), None)
        for key, person in self.people.items():
            if key == self.owner or (peer is not None and key != peer):
                person["role"] = "agent"
            elif key == peer and kind == "bot_chat":
                person["role"] = "bot"
        for msg in messages:
            role = self.people[msg["from"]]["role"] if msg["from"] is not None else None
            if role == "bot":
                msg["bot"] = True
            if peer is not None and role is not None:
                msg["direction"] = "outbound" if role == "agent" else "inbound"

    def message(self, n: int, entry: dict[str, Any]) -> dict[str, Any] | None:
        where = f"chat {self.chat.get('id', '?')}: messages[{n}]"
        text = _text(entry.get("text", ""))
        if text is None:
            self.options.problem(self.path, where, "text as a string or a list of pieces")
            return None
        try:
            at, offset = _when(entry, "date", self.options.timezone)
        except (timestamps.TimestampError, ValueError, OverflowError) as exc:
            self.options.problem(self.path, where, f"a date or date_unixtime ({exc})")
            return None
        extra = {k: v for k, v in entry.items() if k not in _MAPPED}
        edited: tuple[str | None, str | None] = (None, None)
        if entry.get("edited") is not None or entry.get("edited_unixtime") is not None:
            try:
                edited = _when(entry, "edited", None)
            except (timestamps.TimestampError, ValueError, OverflowError) as exc:
                # the message itself is good: kept, without an edit time
                self.options.problem(self.path, where, f"an edited or edited_unixtime ({exc}); "
                                     "the message is kept without its edit time", said=True)
                extra.update({k: entry[k] for k in ("edited", "edited_unixtime") if k in entry})
        if isinstance(entry.get("text"), list) and "text_entities" not in entry:
            extra["text_parts"] = entry["text"]
        mid = self.message_id(entry.get("id"), n)
        fields: dict[str, Any] = {
            "at_offset": offset, "edited_at": edited[0], "edited_at_offset": edited[1],
            "forwarded_from": entry.get("forwarded_from"),
            "attachments": _attachments(entry, [self.path.parent]),
        }
        if entry.get("reply_to_message_id") is not None:
            fields["reply_to"] = str(entry["reply_to_message_id"])
        if entry.get("type") == "service":
            extra.update(actor=entry.get("actor"), actor_id=entry.get("actor_id"))
            if entry.get("actor") or entry.get("actor_id"):
                self.person(entry.get("actor_id"), entry.get("actor"))
            return records.message(mid, at, None, text, system=True, content_type="event",
                                   extra=extra, **fields)
        sender = self.person(entry.get("from_id"), entry.get("from"))
        if fields["attachments"] and not text:
            fields["content_type"] = "media"
        return records.message(mid, at, sender, text, extra=extra, **fields)

    def build(self) -> dict[str, Any] | None:
        raw = self.chat.get("messages")
        if not isinstance(raw, list):
            self.options.problem(self.path, f"chat {self.chat.get('id', '?')}",
                                 "a list of messages; the chat was left out", refused=True)
            return None
        messages = []
        for n, entry in enumerate(raw):
            if not isinstance(entry, dict):
                self.options.problem(self.path, f"messages[{n}]", "a message object")
                continue
            msg = self.message(n, entry)
            if msg is not None:
                messages.append(msg)
        if not messages:
            return None
        self.assign_roles(messages)
        chat = self.chat
        cid = record_id(str(chat["id"])) if chat.get("id") not in (None, "") else (
            "tg-" + stable_id(str(chat.get("name"))))
        extra = {k: v for k, v in chat.items() if k not in ("id", "name", "messages")}
        return records.conversation(cid, min(m["at"] for m in messages),
                                    list(self.people.values()), messages,
                                    platform="telegram", title=chat.get("name"),
                                    extra=extra)


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise UnreadableExport("expected a Telegram export object", path=path)
    if isinstance(data.get("messages"), list):
        chats, owner = [data], None
    elif isinstance(data.get("chats"), dict):
        chats = []
        for key in ("chats", "left_chats"):
            part = data.get(key)
            listed = as_object(part).get("list")
            if isinstance(listed, list):
                chats += listed
            elif part is not None and (not isinstance(part, dict) or listed is not None):
                options.problem(path, key, "an object with a 'list' of chats; its chats, if "
                                "any, were not read", refused=True)
        info = data.get("personal_information")
        if info is not None and not isinstance(info, dict):
            options.problem(path, "personal_information", "an object naming the exporting "
                            "account; read without it (nobody is marked as the agent)")
        user_id = as_object(info).get("user_id")
        owner = record_id(f"user{user_id}") if user_id not in (None, "") else None
    else:
        raise UnreadableExport("no 'messages' and no 'chats.list': not a Telegram export",
                               path=path)

    good = 0
    for n, chat in enumerate(capped(chats, MAX_CHATS, path, "chats", options)):
        if not isinstance(chat, dict):
            options.problem(path, f"chats[{n}]", "a chat object; left out", refused=True)
            continue
        conv = _Chat(chat, owner, path, options).build()
        if conv is not None:
            good += 1
            yield conv
    if chats and not good and options.problems:
        raise UnreadableExport("no chat could be read", path=path)
