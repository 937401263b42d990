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

import os
import re
import stat
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from vault import records, timestamps
from vault.atomic import kind_of
from vault.errors import Oversize, UnreadableExport
from vault.sources import (MAX_EXPORT_FILE_BYTES, MAX_JSON_BYTES, ReadOptions, as_object,
                           epoch_text, long_id_problem, open_regular, parse_json, record_id,
                           unique_id)

DESCRIPTION = "Slack workspace export (.zip or unpacked folder), one conversation per channel-day"
FOLDER_IS_EXPORT = True
FOLDER_RULE = "a .zip, or a folder holding channels.json or users.json"

META_FILE = "chatvault.json"
META_KEY = "chatvault"
MAX_MEMBERS = 200_000
SLACKBOT = "USLACKBOT"

_DAY_FILE = re.compile(r"^([^/]+)/(\d{4}-\d{2}-\d{2})\.json$")
_DAY_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\b.*\.json$")  # "2024-03-01 (1).json" too
_LISTS = (("channels.json", "channel"), ("groups.json", "group"), ("mpims.json", "mpim"),
          ("dms.json", "dm"))
#: files of an export's root, holding no messages (in a folder: a second export's)
_ROOT_FILES = {"users.json", "channels.json", "groups.json", "mpims.json", "dms.json",
               "integration_logs.json", "canvases.json", "org_users.json", META_FILE}
#: what Slack (and slackdump) put next to day files or in folders of their own
_NOT_DAYS = {"canvas_in_the_conversation.json"}
_STORES = {"__uploads", "canvases"}
_CHANNEL_STORES = {"attachments"}
_ADDRESSED = ("dm",)  # kinds whose members are participants, writing or not
_SYSTEM_SUBTYPES = {"pinned_item", "unpinned_item", "reminder_add", "tombstone",
                    "message_deleted"}
_MAPPED = {"type", "user", "text", "ts", "edited", "files", "attachments"}
_USER_MAPPED = {"id", "real_name", "profile", "is_bot"}


def wants(path: Path) -> bool:
    if path.is_dir():
        return (path / "channels.json").is_file() or (path / "users.json").is_file()
    return path.suffix.lower() == ".zip"


class _Tree:
    """The files of an export, zipped or unpacked, named relative to its root.

    Member names are names, never file paths: a zip member is opened by its
    name in the archive, a file of an unpacked export by the name its folder
    walk found. What is not read but looks like data is kept in ``skipped``
    as (position, reason, refused) for :func:`read` to report: a member outside
    the export's folder, a name the zip holds twice, a link, pipe or device
    (never followed nor opened), a folder that cannot be listed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.total = 0  # bytes read so far: an export is bounded as a whole too
        self.skipped: list[tuple[str, str, bool]] = []
        self.prefix = ""
        self.file: BinaryIO | None = None
        if path.is_dir():
            self.names: list[str] = []
            self._walk(path, 0)
            return
        self.file = open_regular(path)  # a FIFO given as a zip is refused, never waited on
        try:
            self.zip = zipfile.ZipFile(self.file)
        except (zipfile.BadZipFile, OSError) as exc:
            self.file.close()
            raise UnreadableExport(f"not a zip archive ({exc})", path=path) from None
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnreadableExport(f"more than {MAX_MEMBERS} members", path=path)
        names = [i.filename for i in infos if not i.is_dir() and not _hidden(i.filename)]
        roots = sorted((n for n in names if n.rsplit("/", 1)[-1] in ("users.json",
                                                                     "channels.json")),
                       key=lambda n: n.count("/"))
        self.prefix = roots[0][: -len(roots[0].rsplit("/", 1)[-1])] if roots else ""
        counts = Counter(names)
        self.names = []
        for n in dict.fromkeys(names):  # each name once, in zip order
            if not n.startswith(self.prefix):
                if _looks_like_day(n):
                    self.skipped.append((f"skipped {_shown(n)}", "outside the export's "
                                         f"folder ({self.prefix}): not read; give each "
                                         "export as its own zip", True))
                continue
            name = n[len(self.prefix):]
            self.names.append(name)
            if counts[n] > 1:
                day = _looks_like_day(name) or _DAY_FILE.match(name) is not None
                self.skipped.append((_shown(name), f"the zip holds {counts[n]} members of "
                                     "this name: only the last is read, the others are "
                                     "left out", day))

    def _walk(self, folder: Path, depth: int) -> None:
        """Add the regular files under ``folder``; links and pipes are only named."""
        rel = folder.relative_to(self.path).as_posix() + "/"
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if depth == 0:
                raise UnreadableExport(f"cannot be read ({exc.strerror or exc})",
                                       path=folder) from None
            self.skipped.append((f"skipped {rel}", "a folder that cannot be read "
                                 f"({exc.strerror or exc}): nothing in it was read", True))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # macOS's ._ twins, .DS_Store: as the folder walk passes them over
            if len(self.names) + len(self.skipped) >= MAX_MEMBERS:
                raise UnreadableExport(f"more than {MAX_MEMBERS} files", path=self.path)
            item = folder / entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            name = item.relative_to(self.path).as_posix()
            if stat.S_ISDIR(mode):
                self._walk(item, depth + 1)
            elif stat.S_ISREG(mode):
                self.names.append(name)
            elif name.lower().endswith(".json") or depth == 0:
                # at the top, a link may stand for a channel's folder: left out too
                day = (_looks_like_day(name) or _DAY_FILE.match(name) is not None
                       or not name.lower().endswith(".json"))
                self.skipped.append((f"skipped {name}", f"{kind_of(mode)}, not a regular "
                                     "file or folder: not read (links are never followed, "
                                     "pipes and devices never opened); copy it itself into "
                                     "the export", day))

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
        if self.file is not None:
            self.file.close()

    def load(self, name: str) -> Any:
        """Parse one JSON member; UnreadableExport when too big or not JSON."""
        where = f"{self.path}!{name}" if self.zip else self.path / name
        if self.zip is None:
            with open_regular(self.path / name, follow=False) as fh:
                data = fh.read(MAX_JSON_BYTES + 1)
        else:
            with self.zip.open(self.prefix + name) as fh:
                data = fh.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise UnreadableExport(f"larger than {MAX_JSON_BYTES} bytes", path=where)
        self.total += len(data)
        if self.total > MAX_EXPORT_FILE_BYTES:
            raise Oversize(f"export holds more than {MAX_EXPORT_FILE_BYTES} bytes of JSON",
                           path=self.path)
        return parse_json(data, where)


def _hidden(name: str) -> bool:
    """A zip member under a hidden folder or named ``.x`` (``__MACOSX/``, ``._`` twins)."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") and p not in (".", "..")
                                         for p in parts)


def _looks_like_day(name: str) -> bool:
    """Whether a member not named ``channel/YYYY-MM-DD.json`` may still hold a day.

    A ``.json`` inside a folder (``/`` or Windows' ``\\``), unless it is a file
    Slack puts there that holds no messages: a list of the export's root in
    another folder (a second export), a channel's canvas, an attachment store.
    A name ending in a date is a day file whatever its folders.
    """
    parts = re.split(r"[/\\]", name)
    base = parts[-1].lower()
    if len(parts) < 2 or not base.endswith(".json") or _DAY_FILE.match(name):
        return False
    if _DAY_NAME.match(base):
        return True
    return not (base in _ROOT_FILES or base in _NOT_DAYS
                or parts[0].lower() in _STORES
                or (len(parts) > 2 and parts[1].lower() in _CHANNEL_STORES))


def _shown(name: str) -> str:
    """A member name for a message: as written when printable, else quoted; bounded."""
    shown = name if name.isprintable() else repr(name)
    return shown if len(shown) <= 200 else shown[:200] + "..."


def _optional_list(tree: _Tree, name: str, options: ReadOptions) -> list[Any]:
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


def _text(*values: Any) -> str | None:
    """The first of ``values`` that is a non-empty string (users.json is not trusted)."""
    return next((v for v in values if isinstance(v, str) and v), None)


def _person(uid: str, raw: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    """The participant for Slack user ``uid`` (filed under ``record_id(uid)``)."""
    info = users.get(uid)
    pid = record_id(uid)
    if info is not None:
        profile = as_object(info.get("profile"))
        bot = bool(info.get("is_bot")) or uid == SLACKBOT
        extra = {k: v for k, v in info.items() if k not in _USER_MAPPED}
        rest = {k: v for k, v in profile.items()
                if k not in ("real_name", "email", "phone") and not k.startswith("image_")}
        odd = {k: profile[k] for k in ("real_name", "email", "phone")
               if k in profile and not isinstance(profile[k], str)}
        if rest or odd:
            extra["profile"] = {**rest, **odd}  # a name that is no string: kept as written
        if not isinstance(info.get("real_name"), (str, type(None))):
            extra["real_name"] = info["real_name"]
        return records.participant(
            pid, "bot" if bot else "customer",
            name=_text(profile.get("real_name"), info.get("real_name"), info.get("name")),
            email=_text(profile.get("email")), phone=_text(profile.get("phone")),
            platform_ids={"slack": uid}, extra=extra)
    shown, bot_profile = as_object(raw.get("user_profile")), as_object(raw.get("bot_profile"))
    name = (shown.get("real_name") or shown.get("display_name") or shown.get("name")
            or raw.get("username") or bot_profile.get("name")
            or ("Slackbot" if uid == SLACKBOT else None))
    bot = uid == SLACKBOT or "bot_id" in raw or raw.get("subtype") == "bot_message"
    team = raw.get("user_team") or shown.get("team")
    return records.participant(pid, "bot" if bot else "customer",
                               name=name if isinstance(name, str) else None,
                               platform_ids={"slack": uid},
                               extra={"team": team, "not_in_users_json": True})


def _add_members(members: Any, users: dict[str, Any], people: dict[str, dict[str, Any]],
                 said: Callable[[str], None]) -> None:
    """Members of a direct message who did not write become participants too."""
    if not isinstance(members, list):
        return
    for uid in members:
        if isinstance(uid, str) and uid and record_id(uid) not in people:
            person = _person(uid, {}, users)
            person["extra"] = {**person.get("extra", {}), "member_only": True}
            people[person["id"]] = person
            if person["id"] != uid:
                said(uid)


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
            people[sender] = _person(sender, raw, users)
        return kept
    pid = None
    if uid is not None:
        if not isinstance(uid, str):
            raise ValueError("'user' as a string id")
        pid = record_id(uid)
        if pid not in people:
            people[pid] = _person(uid, raw, users)
            if pid != uid:
                said(uid)
        elif "name" not in people[pid]:
            # a later message may carry the profile an earlier one (a join notice) lacked
            name = _person(uid, raw, users).get("name")
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
    tree = _Tree(path)
    try:
        yield from _read(tree, path, options)
    finally:
        tree.close()


def _read(tree: _Tree, path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    days = sorted(n for n in tree.names if _DAY_FILE.match(n))
    # left out, so refused (convert exits 3): never dropped in silence
    for position, why, refused in tree.skipped:
        options.problem(path, position, why, said=True, refused=refused)
    for name in tree.names:
        if _looks_like_day(name):
            options.problem(path, f"skipped {_shown(name)}", "not read: Slack day files are "
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


def _conversation(tree: _Tree, day_file: str, users: dict[str, Any],
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

    folder, day = _DAY_FILE.match(day_file).groups()  # type: ignore[union-attr]
    kind, info = folders.get(folder, ("channel", {}))
    if kind in _ADDRESSED or info.get("is_im") is True:
        _add_members(info.get("members"), users, people, said_at(f"{day_file}: members"))
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
