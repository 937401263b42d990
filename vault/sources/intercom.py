"""Intercom conversations (REST API JSON, list responses, and webhook notifications).

Accepted shapes: one conversation object (``type: conversation``), a list
response (``conversations: [...]``), a JSON array of either, and a webhook
``notification_event`` whose ``data.item`` is the conversation (the
envelope's topic and ids are kept in ``extra.notification``). A webhook
carries only the parts it is about, so such a record is partial.

Mapping. The conversation's ``source`` is the first message (id
``source-<id>``); each of ``conversation_parts`` is a message. Authors of
type ``user``, ``lead`` or ``contact`` are ``customer`` (``inbound``),
``admin``/``teammate`` are ``agent`` and ``bot`` is ``bot`` (both
``outbound``); ``from_ai_agent``/``is_ai_answer`` set ``ai: true``. Parts
of type ``note`` are ``visibility: private``, ``direction: internal``.
Parts without a body (assignment, open, close, snooze...) are system events
from their author. ``redacted`` parts are ``deleted: true``.

HTML: Intercom bodies are HTML. ``text`` holds a plain-text rendering
(block elements become line breaks, entities decoded) and the body exactly
as received is kept in ``extra.html``.

Also mapped: ``state`` to ``status``, tag names to ``tags``, ``title``,
the contact's ``external_id`` to ``customer_id``, contact e-mail, phone,
location and browser (``session``) when the export includes them, and
attachments (name, type, size, url). Everything else stays in ``extra``.

A conversation with more parts than one record holds is refused and
reported (:mod:`vault.sources.limits`), never cut short.

Cannot map: attachment contents (only their URLs are exported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import (ReadOptions, as_object, capped, epoch_text, html_to_text,
                           load_json)

DESCRIPTION = "Intercom conversation JSON (API objects, lists, webhook notifications)"
FOLDER_RULE = "*.json"

MAX_CONVERSATIONS = 1_000_000
_ROLES = {"user": "customer", "lead": "customer", "contact": "customer",
          "admin": "agent", "teammate": "agent", "bot": "bot", "team": "agent"}
_CONV_MAPPED = {"type", "id", "created_at", "updated_at", "source", "contacts", "teammates",
                "state", "tags", "title", "conversation_parts"}
_PART_MAPPED = {"type", "id", "body", "created_at", "author", "attachments", "redacted"}


def wants(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def near_miss(path: Path) -> str | None:
    if path.suffix.lower() in (".csv", ".xlsx"):
        return ("Intercom's CSV exports hold no conversation parts and are not read; "
                "export the conversations through the API as JSON")
    return None


def _conversations(data: Any) -> tuple[list[Any], dict[str, Any] | None]:
    """The conversation objects in a document, and a webhook envelope if any."""
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out += _conversations(item)[0]
        return out, None
    if not isinstance(data, dict):
        return [], None
    if data.get("type") == "notification_event":
        item = (data.get("data") or {}).get("item")
        envelope = {k: v for k, v in data.items() if k != "data"}
        return ([item] if isinstance(item, dict) else []), envelope
    if isinstance(data.get("conversations"), list):
        return data["conversations"], None
    if data.get("type") == "conversation" or "conversation_parts" in data:
        return [data], None
    return [], None


class _Builder:
    def __init__(self, conv: dict[str, Any], path: Path, options: ReadOptions) -> None:
        self.conv, self.path, self.options = conv, path, options
        self.people: dict[str, dict[str, Any]] = {}

    def person(self, who: Any) -> str | None:
        if not isinstance(who, dict) or who.get("id") in (None, ""):
            return None
        pid = str(who["id"])
        role = _ROLES.get(str(who.get("type")), "customer")
        known = self.people.setdefault(pid, records.participant(
            pid, role, platform_ids={"intercom": pid}))
        for key in ("name", "email", "phone"):
            if isinstance(who.get(key), str) and who[key] and key not in known:
                known[key] = who[key]
        if who.get("external_id") and "customer_id" not in known:
            known["customer_id"] = str(who["external_id"])
        session = {"location": who.get("location"), "browser": who.get("browser"),
                   "os": who.get("os"), "ip": who.get("last_seen_ip")}
        session = {k: v for k, v in session.items() if v}
        if session and "session" not in known:
            known["session"] = session
        return pid

    def message(self, mid: str, part: dict[str, Any], fallback_at: Any,
                part_type: str | None) -> dict[str, Any] | None:
        when = part.get("created_at", fallback_at)
        try:
            at = epoch_text(when)
        except timestamps.TimestampError as exc:
            self.options.problem(self.path, f"conversation {self.conv.get('id')}: {mid}",
                                 f"a Unix 'created_at' ({exc})")
            return None
        author = as_object(part.get("author"))
        sender = self.person(author)
        body = part.get("body") if isinstance(part.get("body"), str) else None
        extra = {k: v for k, v in part.items() if k not in _PART_MAPPED}
        fields: dict[str, Any] = {"extra": extra, "attachments": _attachments(part)}
        if body:
            extra["html"] = body
        role = self.people[sender]["role"] if sender else None
        fields["direction"] = "inbound" if role == "customer" else "outbound"
        if part_type == "note":
            fields.update(visibility="private", direction="internal")
        elif body is None and part_type not in (None, "comment"):
            fields.update(system=True, content_type="event")
        if role == "bot":
            fields["bot"] = True
        if author.get("from_ai_agent") or author.get("is_ai_answer"):
            fields["ai"] = True
        if part.get("redacted") is True:
            fields["deleted"] = True
        return records.message(mid, at, sender, html_to_text(body) if body else "", **fields)

    def build(self) -> dict[str, Any] | None:
        conv = self.conv
        if conv.get("id") in (None, ""):
            self.options.problem(self.path, "conversation", "an 'id'")
            return None
        for contact in _listed(conv, "contacts", "contacts"):
            if isinstance(contact, dict):
                self.person({"type": "contact", **contact})
        for admin in _listed(conv, "teammates", "admins"):
            if isinstance(admin, dict):
                self.person({"type": "admin", **admin})

        messages = []
        source = conv.get("source")
        if isinstance(source, dict) and source.get("id") not in (None, ""):
            msg = self.message(f"source-{source['id']}", source, conv.get("created_at"), None)
            if msg:
                messages.append(msg)
        parts = _listed(conv, "conversation_parts", "conversation_parts")
        for n, part in enumerate(parts):
            if not isinstance(part, dict) or part.get("id") in (None, ""):
                self.options.problem(self.path, f"conversation {conv['id']}: parts[{n}]",
                                     "a conversation part with an 'id'")
                continue
            msg = self.message(str(part["id"]), part, None, part.get("part_type"))
            if msg:
                messages.append(msg)
        if not messages:
            return None
        return self.record(messages)

    def record(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        conv = self.conv
        tags = [t.get("name") for t in _listed(conv, "tags", "tags")
                if isinstance(t, dict) and isinstance(t.get("name"), str)]
        customers = [p for p in self.people.values() if p["role"] == "customer"]
        flag = conv.get("open")
        status = conv.get("state") or ("open" if flag is True else
                                       "closed" if flag is False else None)
        source = as_object(conv.get("source"))
        return records.conversation(
            str(conv["id"]), _when(conv.get("created_at")) or min(m["at"] for m in messages),
            list(self.people.values()), messages, platform="intercom",
            updated_at=_when(conv.get("updated_at")),
            status=status, title=conv.get("title") or None, tags=tags,
            channel=source.get("type"),
            customer_id=customers[0].get("customer_id") if customers else None,
            extra={k: v for k, v in conv.items() if k not in _CONV_MAPPED})


def _listed(obj: dict[str, Any], key: str, inner: str) -> list[Any]:
    """``obj[key][inner]`` when it is a list (Intercom wraps lists in typed objects)."""
    holder = obj.get(key)
    value = holder.get(inner) if isinstance(holder, dict) else holder
    return value if isinstance(value, list) else []


def _when(value: Any) -> str | None:
    try:
        return epoch_text(value) if value is not None else None
    except timestamps.TimestampError:
        return None


def _attachments(part: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a in part.get("attachments") or []:
        if isinstance(a, dict):
            size = a.get("filesize")
            out.append(records.attachment(
                name=a.get("name"), type=a.get("content_type"), url=a.get("url"),
                size=size if isinstance(size, int) and size >= 0 else None, omitted=True,
                extra={k: v for k, v in a.items()
                       if k not in ("name", "content_type", "url", "filesize")}))
    return out


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    convs, envelope = _conversations(load_json(path))
    if not convs:
        raise UnreadableExport("no Intercom conversation object found", path=path)
    good = 0
    for n, conv in enumerate(capped(convs, MAX_CONVERSATIONS, path, "conversations",
                                    options)):
        if not isinstance(conv, dict):
            options.problem(path, f"conversations[{n}]", "a conversation object")
            continue
        built = _Builder(conv, path, options).build()
        if built is not None:
            if envelope:
                built.setdefault("extra", {})["notification"] = envelope
            good += 1
            yield built
    if not good:
        raise UnreadableExport("no conversation could be read", path=path)
