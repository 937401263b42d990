"""WhatsApp "Export chat" text files (``.txt``, or the ``.zip`` iOS/Android share).

One file is one chat is one conversation. Each message starts a line with a
date, a time and either ``[date, time] Name: text`` (bracketed, iOS) or
``date, time - Name: text`` (dash, Android); lines that do not start so
continue the message above (multi-line messages). Accepted: ``/ . -`` date
separators, two- or four-digit years, year-first dates, 12- or 24-hour
times with or without seconds, AM/PM markers in any case and spacing
(``PM``, ``p.m.``, Spanish ``p. m.``) with any Unicode space before or
inside them (U+202F, U+00A0), and U+200E/U+200F marks at line starts.

The file is UTF-8 text (a byte order mark allowed). One that is not, or
that looks like UTF-16 (as some Windows tools re-save it), is refused
saying so and what to do (:func:`vault.sources.decode_text`); the warning
that times are read as UTC without a timezone comes only once a chat was
read from the file.

Date order. Any first field above 12 means day/month, any second field
above 12 means month/day (majority wins in a mixed file, and a line that
only reads one way is read that way). Without such evidence, the order that
keeps the dates in sequence wins; failing that, files with English
``AM``/``PM`` markers are month/day (US phones) and all others day/month.

Mapping. Times are local wall-clock times: they are converted with the
source's ``timezone`` (``options.timezone``) and the offset is kept in
``at_offset``. Lines without a ``Name:`` part, and lines that the chat
itself writes (iOS: the author of the first, U+200E-marked encryption
notice, i.e. the group or contact name, writing a U+200E-marked line) are
system events (``from: null``); the group name is never a participant.

System lines with ": " in them. Android writes notices without an author
(``Ana created group "Trip: Paris"``), so the ": " inside a quoted group
name or subject looks like the end of an author's name. The part before
it is not taken as an author when it holds a phrase only the chat writes
("created group", "changed the subject", "changed the group
description"..., in English, Spanish, German, French and Portuguese) or
when it leaves a quotation open (``"``, ``“``, ``„``, ``«``...) and no
other line is written under that name; such a line is a system event
with its whole text. An iOS chat or group name that itself holds ": " is
recognised from its notices, where the text after it starts with U+200E.
``<Media omitted>``, ``image omitted``, ``<attached: file>`` and
``file (file attached)`` become attachments (``omitted: true`` unless the
file is in the same folder or zip, then hashed); the message text is then
"" (or the caption). "This message was deleted" (and its Spanish and German
forms) sets ``deleted: true`` with text "". A trailing ``<This message was
edited>`` mark sets ``edited: true`` and is not part of the text. Marks are
stripped from names, never from text; placeholders stay in ``extra``.

Ids. The format has none. The conversation id is derived from the source
and the chat's name (from the file name "WhatsApp Chat with X", or the
folder of an iOS ``_chat.txt``, or the chat name on the first line, or the
file stem), so a chat exported again later keeps its id; message ids hash
the local time, author and text, so they survive the export's own
truncation of old messages.

Cannot map: who is the business side (every person is ``customer``),
delivery state and reply-to (the text export does not carry them), edit
and deletion times. Known limit: a notice in a language or wording not
listed above, whose ": " is not inside quotation marks, is still read as a
message from the words before it; and a person who writes one single
message under a name with an unclosed quotation mark is read as a notice.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import (MAX_ATTACHMENT_BYTES, MAX_EXPORT_FILE_BYTES, ReadOptions, capped,
                           decode_text, digest_stream, local_file_digest, stable_id)

DESCRIPTION = "WhatsApp chat export, .txt (bracketed or dash style, any locale) or .zip"
FOLDER_RULE = "*.txt or *.zip"
SPLIT_BY_MONTH = True

MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
MAX_MESSAGE_CHARS = 4 * 1024 * 1024
MAX_ZIP_MEMBERS = 100_000

#: times are local wall-clock times: read without a timezone they are taken as UTC
LOCAL_TIMES = True

_HEADER = re.compile(
    r"^(?P<open>\[)?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4})\.?(?:,\s*|\s+)"
    r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)\.?"
    r"(?:\s*(?P<ampm>[AaPp]\.?\s*[Mm]\.?))?"
    r"(?(open)\]\s|\s+[-\u2013]\s)(?P<rest>.*)$", re.DOTALL)
# The space after the colon may be any Unicode space (a no-break one, say), as
# everywhere else in a header line; it is never a line break.
_AUTHOR = re.compile(r"^(?P<name>[^:\n]{1,200}?):[^\S\r\n](?P<text>.*)$", re.DOTALL)
# iOS: the chat's own notices, "<chat name>: \u200e<text>"; the name may hold ": "
_NOTICE = re.compile(r"^(?P<name>[^\n]{1,200}?):[^\S\r\n](?=[\u200e\u200f])")
# what only the chat writes, found before a ": " that belongs to a quoted name or subject
_SYSTEM_PHRASE = re.compile(
    r"\b(?:created (?:the |this )?group|changed (?:the subject|the group name|this group's"
    r"|the group's|the group description|the group settings)"
    r"|creó el grupo|cambió (?:el asunto|el nombre del grupo|la descripción)"
    r"|hat (?:die Gruppe|den Betreff|den Gruppennamen|die Gruppenbeschreibung)"
    r"|a créé le groupe|a (?:modifié|changé) (?:le sujet|le nom du groupe|la description)"
    r"|criou o grupo|mudou (?:o assunto|o nome do grupo|a descrição))", re.IGNORECASE)
_CLOSERS = {"\u201e": "\u201c\u201d", "\u201c": "\u201d", "\u00ab": "\u00bb",
            "\u2018": "\u2019", "\u300c": "\u300d"}
_MEDIA = re.compile(
    r"^(?:<Media omitted>|<Médias omis>|<Medien ausgeschlossen>|<Multimedia omitido>"
    r"|(?:image|video|audio|sticker|GIF|document|Contact card) omitted"
    r"|<attached: (?P<att>[^>\n]+)>|(?P<fa>[^\n]+) \(file attached\))(?:\n(?P<cap>.*))?$",
    re.DOTALL)
_DELETED = re.compile(r"^(?:This message was deleted|You deleted this message"
                      r"|Se eliminó este mensaje|Eliminaste este mensaje"
                      r"|Diese Nachricht wurde gelöscht|Du hast diese Nachricht gelöscht)\.?$")
_EDITED = re.compile(r" ?[\u200e\u200f]?<This message was edited>$")
_CHAT_FILE = re.compile(r"^WhatsApp Chat (?:with |- )(?P<name>.+?)(?:\.txt|\.zip)?$")
_PHONE_NAME = re.compile(r"^\+[\d\s().-]{6,}$")

Finder = Callable[[str], tuple[str, int] | None]


def wants(path: Path) -> bool:
    return path.suffix.lower() in (".txt", ".zip")


@dataclass
class _Entry:
    lineno: int
    date: list[str]
    time: str
    ampm: str | None
    rest: str
    more: list[str] = field(default_factory=list)


def _clean_name(name: str) -> str:
    return "".join(c for c in name if c not in MARKS).strip()


def _split(text: str, path: Path, options: ReadOptions) -> list[_Entry]:
    """Header lines with their continuation lines; stray leading lines reported."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    crlf = bool(lines) and all(line.endswith("\r") for line in lines if line)
    entries: list[_Entry] = []
    stray: list[int] = []
    for n, line in enumerate(lines, 1):
        if crlf and line.endswith("\r"):
            line = line[:-1]
        match = _HEADER.match(line.lstrip(MARKS))
        if match:
            date = re.split(r"[./-]", match["date"])
            entries.append(_Entry(n, date, match["time"], match["ampm"], match["rest"]))
        elif entries:
            entries[-1].more.append(line)
        elif line.strip(MARKS + " \t"):
            stray.append(n)
    # one problem for the lines before the first message (none when nothing is a chat:
    # the caller then says the file is not one)
    if entries and stray:
        where = f"line {stray[0]}" if len(stray) == 1 else (
            f"lines {stray[0]}-{stray[-1]} ({len(stray)} lines)")
        options.problem(path, where, "a line starting with a date and a time")
    return entries


def _date_order(entries: list[_Entry]) -> str:
    """"dmy" or "mdy" for the day-first/month-first dates of this file."""
    dmy = sum(1 for e in entries if len(e.date[0]) < 4 and int(e.date[0]) > 12)
    mdy = sum(1 for e in entries if len(e.date[0]) < 4 and int(e.date[1]) > 12)
    if dmy != mdy:
        return "dmy" if dmy > mdy else "mdy"
    steps = {}
    for order in ("dmy", "mdy"):
        days = [d for d in (_ymd(e.date, order) for e in entries) if d]
        steps[order] = sum(1 for a, b in zip(days, days[1:]) if b < a)
    if steps["dmy"] != steps["mdy"]:
        return "dmy" if steps["dmy"] < steps["mdy"] else "mdy"
    english = any(e.ampm and e.ampm.strip().upper() in ("AM", "PM") for e in entries)
    return "mdy" if english else "dmy"


def _ymd(parts: list[str], order: str) -> tuple[int, int, int] | None:
    a, b, c = (int(p) for p in parts)
    if len(parts[0]) == 4:
        y, m, d = a, b, c
    elif order == "dmy":
        d, m, y = a, b, c
    else:
        m, d, y = a, b, c
    y = y + 2000 if y < 100 else y
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    return y, m, d


def _moment(entry: _Entry, order: str) -> datetime | None:
    ymd = _ymd(entry.date, order) or _ymd(entry.date, "mdy" if order == "dmy" else "dmy")
    if ymd is None:
        return None
    fields = [int(x) for x in re.split(r"[:.]", entry.time)]
    hour, minute, second = fields[0], fields[1], fields[2] if len(fields) > 2 else 0
    if entry.ampm:
        if not 1 <= hour <= 12:
            return None
        pm = entry.ampm.lstrip()[0] in "pP"
        hour = hour % 12 + (12 if pm else 0)
    try:
        return datetime(*ymd, hour, minute, second)
    except ValueError:
        return None


def _chat_name(entries: list[_Entry]) -> str | None:
    """The group or contact name the chat writes its own notices under (iOS)."""
    first = _NOTICE.match(entries[0].rest)
    return _clean_name(first["name"]) if first else None


def _open_quote(name: str) -> bool:
    """Whether ``name`` leaves a quotation open (so its ": " was inside quotes)."""
    stack: list[str] = []
    straight = False
    for ch in name:
        if ch == '"':
            straight = not straight
        elif stack and ch in _CLOSERS[stack[-1]]:
            stack.pop()
        elif ch in _CLOSERS:
            stack.append(ch)
    return straight or bool(stack)


def _not_authors(entries: list[_Entry]) -> set[str]:
    """Words before a ": " that are the start of a system line, not a person's name."""
    counts: Counter[str] = Counter()
    for entry in entries:
        match = _AUTHOR.match(entry.rest)
        if match:
            counts[_clean_name(match["name"])] += 1
    return {name for name, n in counts.items()
            if _SYSTEM_PHRASE.search(name) or (n == 1 and _open_quote(name))}


def _author(body: str, chat_name: str | None, not_authors: set[str]) -> tuple[str, str]:
    """(author, text) of a line; ("", body) when the line has no author."""
    if chat_name:
        notice = _NOTICE.match(body)
        if notice and _clean_name(notice["name"]) == chat_name:
            return chat_name, body[notice.end():]
    author = _AUTHOR.match(body)
    if author is None:
        return "", body
    name = _clean_name(author["name"])
    return ("", body) if name in not_authors else (name, author["text"])


def _label(path: Path) -> str:
    """The file name that names the chat (the folder's, for an unzipped ``_chat.txt``)."""
    if path.name == "_chat.txt" and path.parent.name:
        return path.parent.name
    return path.name


def _identity(label: str, chat_name: str | None) -> str:
    match = _CHAT_FILE.match(label)
    if match:
        return match["name"]
    return chat_name or re.sub(r"\.(txt|zip)$", "", label, flags=re.IGNORECASE)


def _attachment(match: re.Match[str], find: Finder) -> dict[str, Any]:
    name = match["att"] or match["fa"]
    placeholder = match.group(0) if match["cap"] is None else match.group(0).split("\n")[0]
    fields: dict[str, Any] = {"omitted": True, "extra": {"placeholder": placeholder}}
    if name:
        fields["name"] = name.strip(MARKS)
        found = find(fields["name"])
        if found:
            fields.update(sha256=found[0], size=found[1], omitted=None)
    return records.attachment(**fields)


def _open(path: Path, options: ReadOptions) -> tuple[str, Finder]:
    """The chat text, and a way to hash an attachment the chat names."""
    if path.suffix.lower() != ".zip":
        data = path.read_bytes()
        return _decode(data, path), lambda n: local_file_digest([path.parent], n)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableExport(f"not a zip archive ({exc})", path=path) from None
    infos = capped(archive.infolist(), MAX_ZIP_MEMBERS, path, "zip members", options)
    texts = [i for i in infos if i.filename.lower().endswith(".txt")]
    chat = next((i for i in texts if i.filename.endswith("_chat.txt")), None)
    if chat is None and len(texts) == 1:
        chat = texts[0]
    if chat is None:
        raise UnreadableExport("no single chat .txt file in the archive", path=path)
    with archive.open(chat) as fh:
        data = fh.read(MAX_EXPORT_FILE_BYTES + 1)
    if len(data) > MAX_EXPORT_FILE_BYTES:
        raise UnreadableExport(f"chat text larger than {MAX_EXPORT_FILE_BYTES} bytes",
                               path=path)
    names = {i.filename: i for i in infos}

    def find(name: str) -> tuple[str, int] | None:
        if name not in names:
            return None
        with archive.open(names[name]) as member:
            return digest_stream(member, MAX_ATTACHMENT_BYTES)

    return _decode(data, path), find


def _decode(data: bytes, path: Path) -> str:
    """The chat's text: UTF-8 (a BOM allowed), else refused saying what it looks like."""
    return decode_text(data, path)


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    text, find = _open(path, options)
    entries = _split(text, path, options)
    if not entries:
        raise UnreadableExport("no line starts with a WhatsApp date and time", path=path)
    order = _date_order(entries)
    chat_name = _chat_name(entries)
    label = _label(path)
    cid = "wa-" + stable_id(options.source, _identity(label, chat_name))

    people: dict[str, dict[str, Any]] = {}
    messages: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    not_authors = _not_authors(entries)
    for entry in entries:
        msg = _message(entry, order, (chat_name, not_authors), find, options, path)
        if msg is None:
            continue
        seen[msg["id"]] = count = seen.get(msg["id"], 0) + 1
        if count > 1:
            msg["id"] = f"{msg['id']}-{count}"
        sender = msg["from"]
        if sender is not None and sender not in people:
            phone = sender if _PHONE_NAME.match(sender) else None
            people[sender] = records.participant(sender, "customer", name=sender, phone=phone)
        messages.append(msg)
    if not messages:
        raise UnreadableExport("no message could be read", path=path)

    yield records.conversation(cid, min(m["at"] for m in messages), list(people.values()),
                               messages,
                               platform="whatsapp", title=_identity(label, chat_name),
                               extra={"date_order": order, "file": path.name})


def _message(entry: _Entry, order: str, chat: tuple[str | None, set[str]], find: Finder,
             options: ReadOptions, path: Path) -> dict[str, Any] | None:
    moment = _moment(entry, order)
    if moment is None:
        options.problem(path, f"line {entry.lineno}", "a valid date and time")
        return None
    body = "\n".join([entry.rest, *entry.more])
    if len(body) > MAX_MESSAGE_CHARS:
        options.problem(path, f"line {entry.lineno}",
                        f"a message under {MAX_MESSAGE_CHARS} characters")
        return None
    at, offset = timestamps.from_local(moment, options.timezone)
    local = moment.isoformat()

    chat_name = chat[0]
    name, text = _author(body, *chat)
    media = _MEDIA.match(text.lstrip(MARKS))
    notice = name == chat_name and text.startswith(("\u200e", "\u200f"))
    if not name or (notice and not media):
        extra = {"by": name} if name else None
        return records.message(stable_id(local, "", body), at, None, text, at_offset=offset,
                               system=True, content_type="event", extra=extra)

    fields: dict[str, Any] = {"at_offset": offset}
    edited = _EDITED.search(text)
    if edited:
        text = text[: edited.start()]
        fields["edited"] = True
        media = _MEDIA.match(text.lstrip(MARKS))
    if media:
        fields["attachments"] = [_attachment(media, find)]
        text = media["cap"] or ""
        fields["content_type"] = "media" if not text else None
    elif _DELETED.match(text.strip(MARKS)):
        fields.update(deleted=True, extra={"placeholder": text})
        text = ""
    return records.message(stable_id(local, name, body), at, name, text, **fields)
