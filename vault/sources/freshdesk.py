"""Freshdesk tickets with their conversations (API JSON).

Accepted shapes: ``{"ticket": {...}, "conversations": [...]}``, a ticket
fetched with ``include=conversations`` (the list inside the ticket), a bare
ticket, and a JSON array of any of these. One ticket is one conversation
(id ``ticket-<id>``).

Mapping. The ticket's ``description`` is the first message (id
``description``, from the requester, at ``created_at``); each conversation
entry is a message. ``incoming`` entries are ``inbound``, others
``outbound``; ``private`` notes are ``visibility: private`` and
``direction: internal``. The requester is ``customer`` (name, e-mail, phone
or mobile, ``requester_id``), other authors (``user_id``) and the responder
are ``agent``; an entry with no author (an automated greeting) has
``from: null``. Status codes become names (2 open, 3 pending, 4 resolved,
5 closed; the code stays in ``extra``), known ``source`` codes give the
``channel`` (1 email, 2 portal, 3 phone, 7 chat...; the code stays in
``extra``), ``subject`` is the title, ``tags`` are kept, attachments keep
name, type and size.

Sender e-mail. An entry's ``from_email`` (the address a reply was sent
from) is the e-mail of its author's participant record, so subject search
finds the agent by it; it also stays in the message's ``extra``. A person
whose record already holds another e-mail (the requester's own, or an
earlier ``from_email``) keeps it, and the further addresses are listed in
the record's ``extra.from_emails`` (kept, not indexed: a participant record
holds one e-mail). An entry with a ``from_email`` and no
``user_id`` is from a participant ``email:<from_email>`` (``agent``, or
``customer`` when ``incoming``).

HTML: Freshdesk gives both ``body`` (HTML) and ``body_text``. ``text`` is
``body_text`` exactly as given (a plain rendering of ``body`` when absent);
the HTML is kept in ``extra.html``.

A ticket with more conversation entries than one record holds is refused
and reported (:mod:`vault.sources.limits`), never cut short.

Cannot map: attachment contents (only metadata and URLs are exported),
edits and delivery state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import ReadOptions, capped, html_to_text, load_json

DESCRIPTION = "Freshdesk ticket JSON with conversations (notes, requester, attachments)"
FOLDER_RULE = "*.json"

MAX_TICKETS = 1_000_000
STATUS = {2: "open", 3: "pending", 4: "resolved", 5: "closed"}
CHANNELS = {1: "email", 2: "portal", 3: "phone", 7: "chat", 9: "feedback_widget",
            10: "outbound_email"}
_TICKET_MAPPED = {"id", "subject", "description", "description_text", "status",
                  "requester_id", "responder_id", "tags", "created_at", "updated_at",
                  "attachments", "requester", "conversations"}
_ENTRY_MAPPED = {"id", "body", "body_text", "incoming", "private", "user_id",
                 "created_at", "attachments"}


def wants(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def near_miss(path: Path) -> str | None:
    if path.suffix.lower() in (".csv", ".xlsx"):
        return ("Freshdesk's CSV and Excel exports hold no conversations and are not read; "
                "export the tickets through the API as JSON")
    return None


def _tickets(data: Any) -> list[tuple[Any, Any]]:
    """(ticket, conversations) pairs in a document."""
    if isinstance(data, list):
        return [pair for item in data for pair in _tickets(item)]
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("ticket"), dict):
        return [(data["ticket"], data.get("conversations", data["ticket"].get(
            "conversations", [])))]
    if "id" in data and ("subject" in data or "conversations" in data):
        return [(data, data.get("conversations", []))]
    return []


def _attachments(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for a in entry.get("attachments") or []:
        if isinstance(a, dict):
            size = a.get("size")
            out.append(records.attachment(
                name=a.get("name"), type=a.get("content_type"),
                size=size if isinstance(size, int) and size >= 0 else None,
                url=a.get("attachment_url"), omitted=True,
                extra={k: v for k, v in a.items()
                       if k not in ("name", "content_type", "size", "attachment_url")}))
    return out


def _text(entry: dict[str, Any], text_key: str, html_key: str) -> tuple[str, str | None]:
    html = entry.get(html_key) if isinstance(entry.get(html_key), str) else None
    text = entry.get(text_key)
    if isinstance(text, str):
        return text, html
    return (html_to_text(html) if html else ""), html


def _when(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return timestamps.canonicalize(value)[0]
    except timestamps.TimestampError:
        return None


class _Ticket:
    def __init__(self, ticket: dict[str, Any], path: Path, options: ReadOptions) -> None:
        self.ticket, self.path, self.options = ticket, path, options
        self.people: dict[str, dict[str, Any]] = {}
        self.requester = str(ticket.get("requester_id"))

    def person(self, uid: Any, incoming: bool = False) -> str | None:
        if uid is None or isinstance(uid, (bool, dict, list)):
            return None
        pid = str(uid)
        if pid not in self.people:
            role = "customer" if pid == self.requester or incoming else "agent"
            self.people[pid] = records.participant(pid, role,
                                                   platform_ids={"freshdesk": pid})
        return pid

    def sender(self, entry: dict[str, Any], incoming: bool) -> str | None:
        """The author of an entry, carrying the ``from_email`` it was sent from."""
        email = entry.get("from_email")
        email = email.strip() if isinstance(email, str) else ""
        pid = self.person(entry.get("user_id"), incoming)
        if pid is None and email:
            pid = f"email:{email}"
            if pid not in self.people:
                self.people[pid] = records.participant(
                    pid, "customer" if incoming else "agent")
        if pid is None or not email:
            return pid
        person = self.people[pid]
        held = person.get("email")
        if not held:
            person["email"] = email
        elif held.casefold() != email.casefold():
            others = person.setdefault("extra", {}).setdefault("from_emails", [])
            if email not in others:
                others.append(email)
        return pid

    def requester_details(self) -> None:
        info = self.ticket.get("requester")
        if not isinstance(info, dict) or self.ticket.get("requester_id") is None:
            return
        person = self.people[self.person(self.ticket["requester_id"]) or ""]
        for key, field in (("name", "name"), ("email", "email"), ("phone", "phone"),
                           ("mobile", "phone")):
            value = info.get(key)
            if isinstance(value, str) and value and field not in person:
                person[field] = value
        if isinstance(info.get("mobile"), str) and info["mobile"] and (
                person.get("phone") != info["mobile"]):
            person.setdefault("extra", {})["mobile"] = info["mobile"]

    def message(self, n: int, entry: Any) -> dict[str, Any] | None:
        where = f"ticket {self.ticket.get('id')}: " + (
            f"conversations[{n}]" if n >= 0 else "description")
        if not isinstance(entry, dict) or entry.get("id") is None:
            self.options.problem(self.path, where, "a conversation object with an 'id'")
            return None
        try:
            at, offset = timestamps.canonicalize(str(entry.get("created_at")))
        except timestamps.TimestampError as exc:
            self.options.problem(self.path, where, f"an ISO 8601 'created_at' ({exc})")
            return None
        incoming = entry.get("incoming") is True
        sender = self.sender(entry, incoming)
        text, html = _text(entry, "body_text", "body")
        extra = {k: v for k, v in entry.items() if k not in _ENTRY_MAPPED}
        if html is not None:
            extra["html"] = html
        fields: dict[str, Any] = {"at_offset": offset, "extra": extra,
                                  "direction": "inbound" if incoming else "outbound",
                                  "attachments": _attachments(entry)}
        if entry.get("private") is True:
            fields.update(visibility="private", direction="internal")
        return records.message(str(entry["id"]), at, sender, text, **fields)

    def build(self, entries: Any) -> dict[str, Any] | None:
        t = self.ticket
        self.person(t.get("requester_id"), True)
        self.requester_details()
        self.person(t.get("responder_id"))
        messages = []
        if isinstance(t.get("description_text"), str) or isinstance(t.get("description"), str):
            first = {"id": "description", "user_id": t.get("requester_id"), "incoming": True,
                     "created_at": t.get("created_at"), "attachments": t.get("attachments"),
                     "body": t.get("description"), "body_text": t.get("description_text")}
            messages.append(self.message(-1, first))
        if not isinstance(entries, list):
            self.options.problem(self.path, f"ticket {t.get('id')}", "a conversations list")
            entries = []
        messages += [self.message(n, e) for n, e in enumerate(entries)]
        kept = [m for m in messages if m is not None]
        if not kept:
            return None
        status = t.get("status")
        extra = {k: v for k, v in t.items() if k not in _TICKET_MAPPED}
        extra["status_code"] = status
        created, updated = _when(t.get("created_at")), _when(t.get("updated_at"))
        tags = [x for x in t.get("tags") or [] if isinstance(x, str)]
        return records.conversation(
            f"ticket-{t['id']}", created or min(m["at"] for m in kept),
            list(self.people.values()), kept, platform="freshdesk", updated_at=updated,
            status=STATUS.get(status) if isinstance(status, int) and status in STATUS else (
                str(status) if status is not None else None),
            title=t.get("subject") or None, tags=tags,
            channel=CHANNELS.get(t["source"]) if isinstance(t.get("source"), int) else None,
            customer_id=self.requester if t.get("requester_id") is not None else None,
            extra=extra)


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    pairs = _tickets(load_json(path))
    if not pairs:
        raise UnreadableExport("no Freshdesk ticket found", path=path)
    good = 0
    for n, (ticket, entries) in enumerate(capped(pairs, MAX_TICKETS, path, "tickets",
                                                 options)):
        if ticket.get("id") is None:
            options.problem(path, f"ticket {n}", "a ticket with an 'id'")
            continue
        conv = _Ticket(ticket, path, options).build(entries)
        if conv is not None:
            good += 1
            yield conv
    if not good:
        raise UnreadableExport("no ticket could be read", path=path)
