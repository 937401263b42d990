"""Facebook Messenger and Instagram "Download your information" JSON (``message_N.json``).

One thread folder is one conversation: ``message_1.json`` is read together
with its siblings ``message_2.json``... (long threads are split over several
files); the siblings are not read on their own.

Mojibake. These exports write text as UTF-8 bytes each escaped as if it were
a Latin-1 character ("ZoÃ«" for "Zoë"). Every string is repaired by
encoding it to Latin-1 and decoding the bytes as UTF-8, but only when both
steps succeed; otherwise (text that was already right, such as "Zoë" or an
emoji) it is kept exactly as is. The repair restores the text as written and
is idempotent.

Mapping. ``messages`` are newest first; records are chronological. There
are no message or person ids: a person's id is their name, a message's id is
its ``timestamp_ms`` (``.2``, ``.3``... for messages in the same
millisecond), and the conversation id is ``thread_path``. ``content`` is
the text ("" when absent); photos, videos, audio, files, GIFs and stickers
become attachments (hashed when the file is in the export, looked up from
the JSON's folder upwards); ``is_unsent`` is ``deleted``; ``Subscribe`` /
``Unsubscribe`` entries are system events; reactions, shares and the rest
stay in ``extra``.

Folders. Thread files are found by their names, ``message_N.json``; a
JSON file with another name that holds Messenger messages is reported, not
read, because a thread split over several files cannot be put together
again without the names (one part read alone would carry the whole
thread's id and replace it in the vault): give such a file itself as the
source path. The export's other JSON files (profile, settings...) are not
chats and are passed over; HTML exports are reported.

Long threads. A thread too large for one record becomes one conversation
per calendar month, ``<thread_path>#YYYY-MM`` (:mod:`vault.sources.limits`).

Cannot map: who is the business side (everyone is ``customer``), delivery
state, replies, edits; the generated notices ("X sent an attachment.") look
like any message and stay messages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from vault import records
from vault.errors import UnreadableExport
from vault.sources import ReadOptions, epoch_text, load_json, local_file_digest, stable_id

DESCRIPTION = "Facebook Messenger / Instagram JSON export (message_1.json, mojibake repaired)"
FOLDER_RULE = "message_N.json, one thread per folder"
SPLIT_BY_MONTH = True

MAX_PARTS = 1000
_SNIFF_BYTES = 64 * 1024
_PART = re.compile(r"^message_(\d+)\.json$")
_MEDIA_KEYS = ("photos", "videos", "audio_files", "files", "gifs")
_MAPPED = {"sender_name", "timestamp_ms", "content", "is_unsent", *_MEDIA_KEYS, "sticker"}


def wants(path: Path) -> bool:
    """In a folder: thread files only (the export's other JSON files are not chats)."""
    match = _PART.match(path.name)
    if match is None:
        return False
    return match[1] == "1" or not (path.parent / "message_1.json").exists()


def near_miss(path: Path) -> str | None:
    """A thread file under another name (sniffed from its start), or an HTML export."""
    suffix = path.suffix.lower()
    if suffix == ".html" and path.name.lower().startswith("message_"):
        return ("Messenger's HTML export cannot be read; download your information again "
                "choosing the JSON format")
    if suffix != ".json" or _PART.match(path.name):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return None
    if b'"sender_name"' in head and b'"timestamp_ms"' in head:
        return ("messenger folder exports are read from thread files named message_N.json; "
                "give this file itself as the source path to read it")
    return None


def repair(text: str) -> str:
    """Undo Latin-1 mojibake when (and only when) ``text`` is mojibake."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def repair_all(value: Any) -> Any:
    """``repair`` applied to every string value (not the keys) of a JSON value."""
    if isinstance(value, str):
        return repair(value)
    if isinstance(value, list):
        return [repair_all(v) for v in value]
    if isinstance(value, dict):
        return {k: repair_all(v) for k, v in value.items()}
    return value


def _parts(path: Path, options: ReadOptions) -> list[Path]:
    match = _PART.match(path.name)
    if not match or match[1] != "1":
        return [path]
    found = [path]
    for n in range(2, MAX_PARTS + 2):
        sibling = path.parent / f"message_{n}.json"
        if not sibling.is_file() or sibling.is_symlink():
            break
        found.append(sibling)
    if len(found) > MAX_PARTS:
        options.problem(path.parent, f"message_{MAX_PARTS + 1}.json",
                        f"a thread of at most {MAX_PARTS} files; the files from this one on "
                        "were left out", refused=True)
        found = found[:MAX_PARTS]
    return found


def _attachments(msg: dict[str, Any], bases: list[Path]) -> list[dict[str, Any]]:
    items: list[tuple[str, dict[str, Any]]] = []
    for key in _MEDIA_KEYS:
        for item in msg.get(key) or []:
            if isinstance(item, dict):
                items.append((key, item))
    if isinstance(msg.get("sticker"), dict):
        items.append(("sticker", msg["sticker"]))
    out = []
    for key, item in items:
        uri = item["uri"] if isinstance(item.get("uri"), str) else ""
        found = local_file_digest(bases, uri) if uri else None
        extra = {**item, "kind": key}
        out.append(records.attachment(
            name=Path(uri).name or None,
            sha256=found[0] if found else None, size=found[1] if found else None,
            omitted=None if found else True, extra=extra))
    return out


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    documents = [load_json(p) for p in _parts(path, options)]
    first = documents[0]
    if not isinstance(first, dict) or not isinstance(first.get("messages"), list):
        raise UnreadableExport("no 'messages' list: not a Messenger/Instagram export",
                               path=path)
    data: dict[str, Any] = repair_all({k: v for k, v in first.items() if k != "messages"})
    raw: list[Any] = []
    for doc in documents:
        listed = doc.get("messages") if isinstance(doc, dict) else None
        raw += listed if isinstance(listed, list) else []

    people: dict[str, dict[str, Any]] = {}
    for person in data.get("participants") or []:
        if isinstance(person, dict) and isinstance(person.get("name"), str):
            people.setdefault(person["name"], records.participant(
                person["name"], "customer", name=person["name"]))

    bases = [path.parent, *list(path.parents)[1:5]]
    messages = []
    seen: dict[str, int] = {}
    # newest first in the file: walk oldest first so same-millisecond ids count up in time
    for n in reversed(range(len(raw))):
        msg = _message(n, raw[n], people, seen, bases, path, options)
        if msg is not None:
            messages.append(msg)
    if not messages:
        raise UnreadableExport("no message could be read", path=path)
    messages.sort(key=lambda m: m["extra"]["timestamp_ms"])
    for m in messages:
        del m["extra"]["timestamp_ms"]
        if not m["extra"]:
            del m["extra"]

    cid = data.get("thread_path") or "fb-" + stable_id(str(data.get("title")),
                                                         *sorted(people))
    extra = {k: v for k, v in data.items() if k not in ("participants", "title")}
    yield records.conversation(str(cid), messages[0]["at"], list(people.values()), messages,
                               platform="messenger", title=data.get("title"), extra=extra)


def _message(n: int, entry: Any, people: dict[str, dict[str, Any]], seen: dict[str, int],
             bases: list[Path], path: Path, options: ReadOptions) -> dict[str, Any] | None:
    where = f"messages[{n}]"
    ms = entry.get("timestamp_ms") if isinstance(entry, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, int):
        options.problem(path, where, "a message object with an integer timestamp_ms")
        return None
    entry = repair_all(entry)
    sender = entry.get("sender_name")
    if isinstance(sender, str) and sender not in people:
        people[sender] = records.participant(sender, "customer", name=sender)
    text = entry.get("content") if isinstance(entry.get("content"), str) else ""

    seen[str(ms)] = count = seen.get(str(ms), 0) + 1
    mid = str(ms) if count == 1 else f"{ms}.{count}"
    extra = {k: v for k, v in entry.items() if k not in _MAPPED}
    extra["timestamp_ms"] = ms
    fields: dict[str, Any] = {"attachments": _attachments(entry, bases), "extra": extra}
    if entry.get("is_unsent") is True:
        fields["deleted"] = True
    if entry.get("type") in ("Subscribe", "Unsubscribe"):
        fields.update(system=True, content_type="event")
    elif fields["attachments"] and not text:
        fields["content_type"] = "media"
    author = sender if isinstance(sender, str) else None
    return records.message(mid, epoch_text(ms, 1000), author, text, **fields)
