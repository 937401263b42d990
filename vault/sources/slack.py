"""Slack workspace exports: the ``.zip`` Slack produces, or that zip unpacked.

An export holds ``users.json``, ``channels.json`` (and ``groups.json``,
``dms.json``, ``mpims.json`` when private conversations are included) and a
folder per channel with one JSON file per day (``general/2024-03-01.json``).

Conversation boundaries: **one conversation per channel per day**, exactly
as Slack files them (id ``<channel id>:<YYYY-MM-DD>``). A day's file only
grows while that day lasts, so ids stay stable as exports repeat, and a
busy channel never becomes one unbounded record. Threads are kept as
links: a reply (``thread_ts`` different from its ``ts``) has ``reply_to``
set to its parent's id (the parent's ``ts``), which may sit in an earlier
day's conversation of the same channel.

Mapping. Message id is ``ts``, kept to the microsecond. Participants are
the people who wrote that day, first seen first, then, in a direct message
(``dms.json``, or a list entry with ``is_im``), the other member it lists:
the messages are addressed to them even when they never answer, so a
subject search or erasure must find them there. Such a member gets the
role a writer would and ``extra.member_only: true``. Members of group DMs
(``mpims.json``, ``is_mpim``) and of channels stay in ``extra`` only, as
the platform lists them: the participants of a group DM are the people who
wrote in it (the public bug-report cases fix that), so a group DM a person
only read is not found by searching for that person (README, Known
limitations).
Names, e-mail and phone come from ``users.json``. People missing from it
(``USLACKBOT``, shared-channel users of another workspace, deleted users,
``bot_message`` entries with only ``bot_id``/``username``) never stop a
read: their name comes from the message's ``user_profile``, ``username`` or
``bot_profile``, and the raw id is kept as the participant id. Join/leave/
topic notices are system events; ``edited`` gives ``edited_at``; ``files``
and legacy ``attachments`` (with their fallback text) become attachments;
bots are role ``bot`` and their messages ``bot: true``. Everything else
stays in ``extra``. People are ``customer`` unless they are bots: the export
does not say who is staff.

Odd fields never refuse a channel-day: ``files``, ``attachments`` or
``edited`` of another shape are kept in ``extra`` as written; a name, e-mail
or phone in ``users.json`` that is no string is left out of the participant
(kept in its ``extra``); a ``ts`` twice in one day keeps both messages
(``<ts>#2``); a user id longer than a record id holds is shortened the same
way everywhere and reported (:func:`vault.sources.record_id`; the message is
kept, the whole id in ``platform_ids.slack``); a message without a string
``ts`` and ``text``, or with a ``user`` that is no string, is reported and
left out.

Writing (``write``) produces a folder export that Slack tools can browse,
puts the Slack fields kept in ``extra`` back in place, and keeps what Slack
cannot carry (offsets, roles, flags...) in a ``chatvault`` key on each
message and in ``chatvault.json``, which this reader picks up again, so a
written conversation reads back identical.

A channel-day with more messages than one record holds is refused and
reported (:mod:`vault.sources.limits`), never cut short. A folder holding
several exports (zips or unpacked folders) reads each of them.

Cannot map: file contents (Slack exports only link to them), reactions and
delivery state beyond ``extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import (ReadOptions, as_object, epoch_text, long_id_problem, record_id,
                           unique_id)
from vault.sources.slacktree import DAY_FILE, META_FILE, ExportTree, looks_like_day, shown
from vault.sources.slackusers import SLACKBOT, add_members, participant

DESCRIPTION = "Slack workspace export (.zip or unpacked folder), one conversation per channel-day"
FOLDER_IS_EXPORT = True
FOLDER_RULE = "a .zip, or a folder holding channels.json or users.json"

META_KEY = "chatvault"

_LISTS = (("channels.json", "channel"), ("groups.json", "group"), ("mpims.json", "mpim"),
          ("dms.json", "dm"))
_ADDRESSED = ("dm",)  # kinds whose members are participants, writing or not
_SYSTEM_SUBTYPES = {"pinned_item", "unpinned_item", "reminder_add", "tombstone",
                    "message_deleted"}
_MAPPED = {"type", "user", "text", "ts", "edited", "files", "attachments"}


def wants(path: Path) -> bool:
    if path.is_dir():
        return (path / "channels.json").is_file() or (path / "users.json").is_file()
    return path.suffix.lower() == ".zip"


def _optional_list(tree: ExportTree, name: str, options: ReadOptions) -> list[Any]:
    if name not in tree.names:
        return []
    try:
        data = tree.load(name)
    except UnreadableExport as exc:
        options.problem(tree.path, name, exc.detail, said=True)
        return []
    if not isinstance(data, list):
        options.problem(tree.path, name, "a JSON list")
        return []
    return [d for d in data if isinstance(d, dict)]


def _listed(value: Any) -> list[Any]:
    """``value`` when it is a list; anything else holds no items (it is kept in extra)."""
    return value if isinstance(value, list) else []


def _attachments(raw: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in _listed(raw.get("files")):
        if isinstance(f, dict):
            gone = f.get("mode") in ("tombstone", "hidden_by_limit")
            keep = {k: v for k, v in f.items() if k in ("id", "title", "filetype", "mode")}
            size = f.get("size") if isinstance(f.get("size"), int) else None
            if gone:
                keep["gone"] = True
            out.append(records.attachment(name=f.get("name"), type=f.get("mimetype"),
                                          size=size, url=f.get("url_private"),
                                          omitted=True, extra=keep or None))
    for a in _listed(raw.get("attachments")):
        if isinstance(a, dict):
            text = a.get("fallback") or a.get("text") or a.get("pretext")
            out.append(records.attachment(name=a.get("title"), text=text,
                                          url=a.get("title_link") or a.get("from_url"),
                                          extra={k: v for k, v in a.items()
                                                 if k not in ("fallback", "title")
                                                 and not (k == "text" and v == text)}))
    return out


def _message(raw: dict[str, Any], users: dict[str, Any], people: dict[str, dict[str, Any]],
             said: Callable[[str], None]) -> dict[str, Any]:
    """One record from one Slack message; raises ValueError/TimestampError when malformed.

    ``said`` reports a user id too long for a record id. Such an id (no Slack id
    is near 1,024 characters: a tool wrote something else there) is shortened,
    not refused: the message is kept and filed under :func:`record_id` of it,
    the same for every mention in the export, with the whole id in the
    participant's ``platform_ids.slack`` (refusing it refused the whole
    channel-day, and dropping the message lost its text).
    """
    text = raw.get("text", "")
    if not isinstance(text, str) or not isinstance(raw.get("ts"), str):
        raise ValueError("a message with a string 'ts' and 'text'")
    if len(raw["ts"]) > records.MAX_ID_CHARS:
        raise ValueError(f"a 'ts' of at most {records.MAX_ID_CHARS} characters (a Unix time)")
    mine = raw.get(META_KEY)
    uid = raw.get("user") or raw.get("bot_id")
    # what write() put there; anything else under that key is read as Slack's (and kept)
    if isinstance(mine, dict) and all(isinstance(mine.get(k), str) for k in ("id", "at")):
        kept = {**mine, "text": text}
        spread = kept.pop("extra_keys", None)
        if isinstance(spread, list):
            inline = as_object(kept.get("extra"))
            kept["extra"] = {**inline, **{k: raw[k] for k in spread
                                          if isinstance(k, str) and k in raw}}
        sender = kept.get("from")
        if isinstance(sender, str) and sender not in people:
            people[sender] = participant(sender, raw, users)
        return kept
    pid = None
    if uid is not None:
        if not isinstance(uid, str):
            raise ValueError("'user' as a string id")
        pid = record_id(uid)
        if pid not in people:
            people[pid] = participant(uid, raw, users)
            if pid != uid:
                said(uid)
        elif "name" not in people[pid]:
            # a later message may carry the profile an earlier one (a join notice) lacked
            name = participant(uid, raw, users).get("name")
            if name:
                people[pid]["name"] = name

    subtype = raw.get("subtype")
    system = isinstance(subtype, str) and (subtype.startswith(("channel_", "group_"))
                                           or subtype in _SYSTEM_SUBTYPES)
    edited = as_object(raw.get("edited"))
    thread = raw.get("thread_ts")
    bot = "bot_id" in raw or subtype == "bot_message" or uid == SLACKBOT
    attachments = _attachments(raw)
    extra = {k: v for k, v in raw.items() if k not in _MAPPED}
    for key, shape in (("edited", dict), ("files", list), ("attachments", list)):
        if key in raw and raw[key] is not None and not isinstance(raw[key], shape):
            extra[key] = raw[key]  # not what Slack writes there: kept as written
    return records.message(
        raw["ts"], epoch_text(raw["ts"]), pid, text,
        system=True if system else None, content_type="event" if system else (
            "media" if attachments and not text else None),
        bot=True if bot else None,
        deleted=True if subtype in ("tombstone", "message_deleted") else None,
        edited_at=epoch_text(edited["ts"]) if edited.get("ts") else None,
        reply_to=thread if isinstance(thread, str) and thread != raw["ts"] else None,
        attachments=attachments, extra=extra)


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    tree = ExportTree(path)
    try:
        yield from _read(tree, path, options)
    finally:
        tree.close()


def _read(tree: ExportTree, path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    days = sorted(n for n in tree.names if DAY_FILE.match(n))
    # left out, so refused (convert exits 3): never dropped in silence
    for position, why, refused in tree.skipped:
        options.problem(path, position, why, said=True, refused=refused)
    for name in tree.names:
        if looks_like_day(name):
            options.problem(path, f"skipped {shown(name)}", "not read: Slack day files are "
                            "channel/YYYY-MM-DD.json, one folder deep in the export; this "
                            "name is not (a channel named with '/', a renamed day?)",
                            said=True, refused=True)
    if not days:
        raise UnreadableExport("no channel folders with per-day JSON files: not a Slack "
                               "export", path=path)
    users = {u["id"]: u for u in _optional_list(tree, "users.json", options)
             if isinstance(u.get("id"), str)}
    folders: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, kind in _LISTS:
        for info in _optional_list(tree, name, options):
            key = info.get("name") if kind != "dm" else info.get("id")
            if isinstance(key, str):
                folders[key] = (kind, info)
    meta = {}
    if META_FILE in tree.names:
        try:
            loaded = tree.load(META_FILE)
        except UnreadableExport as exc:
            options.problem(path, META_FILE, exc.detail, said=True)
            loaded = None
        if isinstance(loaded, dict) and isinstance(loaded.get("conversations"), dict):
            meta = loaded["conversations"]

    good = 0
    for day_file in days:
        conv = _conversation(tree, day_file, users, folders, meta.get(day_file), options)
        if conv is not None:
            good += 1
            yield conv
    if not good:
        raise UnreadableExport("no channel day could be read", path=path)


def _conversation(tree: ExportTree, day_file: str, users: dict[str, Any],
                  folders: dict[str, tuple[str, dict[str, Any]]], meta: Any,
                  options: ReadOptions) -> dict[str, Any] | None:
    # a day file left unread leaves its messages out: refused (convert exits 3)
    try:
        raw = tree.load(day_file)
    except UnreadableExport as exc:
        options.problem(tree.path, day_file, exc.detail, said=True, refused=True)
        return None
    if not isinstance(raw, list):
        options.problem(tree.path, day_file, "a JSON list of messages", refused=True)
        return None
    people: dict[str, dict[str, Any]] = {}
    messages = []
    seen: set[str] = set()

    def said_at(position: str) -> Callable[[str], None]:
        return lambda uid: long_id_problem(options, tree.path, position, "a user id", uid,
                                           "the participant's platform_ids.slack")

    for n, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise ValueError("a message object")
            msg = _message(item, users, people, said_at(f"{day_file}: [{n}]"))
            # a ts twice in a day (an export merged by hand) keeps both: "<ts>#2"
            if isinstance(msg.get("id"), str):
                msg["id"] = unique_id(msg["id"], seen)
            messages.append(msg)
        except timestamps.TimestampError as exc:
            options.problem(tree.path, f"{day_file}: [{n}]", f"a message time ({exc})")
        except ValueError as exc:
            options.problem(tree.path, f"{day_file}: [{n}]", str(exc))
    if (isinstance(meta, dict) and isinstance(meta.get("conversation_id"), str)
            and isinstance(meta.get("participants"), list)):  # as write() puts it
        return {**meta, "messages": messages}
    if not messages:
        return None

    folder, day = DAY_FILE.match(day_file).groups()  # type: ignore[union-attr]
    kind, info = folders.get(folder, ("channel", {}))
    if kind in _ADDRESSED or info.get("is_im") is True:
        add_members(info.get("members"), users, people, said_at(f"{day_file}: members"))
    channel_id = info.get("id") if isinstance(info.get("id"), str) else folder
    extra = {"channel_id": channel_id, "channel_kind": kind, "day": day,
             "channel_info": {k: v for k, v in info.items() if k not in ("id", "name")}}
    return records.conversation(f"{channel_id}:{day}", min(m["at"] for m in messages),
                                list(people.values()), messages, platform="slack",
                                channel=info.get("name") or folder, extra=extra)



def write(conversations: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``conversations`` as an unpacked Slack export (:mod:`vault.sources.slackwrite`)."""
    from vault.sources import slackwrite

    return slackwrite.write(conversations, out_dir)