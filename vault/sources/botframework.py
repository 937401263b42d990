"""Microsoft Bot Framework transcripts (``.transcript``: a JSON array of activities).

Activities are grouped by ``conversation.id`` (a file normally holds one
conversation; activities without one take the file's name). ``message``
activities are messages; ``typing`` and ``trace`` activities are not (they
are counted in ``extra.skipped``); every other type (``conversationUpdate``,
``endOfConversation``, ``event``, ``messageReaction``...) is a system event
with ``from: null`` and the activity's fields in ``extra``. An activity with
no ``from`` (a leading ``conversationUpdate``, a channel notice) never
stops a read; nor does an account that is not an object or whose ``id``
is missing, not a string or ``""``: it is no account (a message from it is
an event, the raw field kept in ``extra``), and a ``membersAdded`` that is
not a list adds no one (it stays in ``extra``). An account or activity id
longer than a record id holds is filed under a stable shortened form and
reported (:func:`vault.sources.record_id`); an activity id seen before in
the conversation gets ``#2``, ``#3``... (the id as written in
``extra.id_in_export``), so neither refuses the conversation.

Mapping. Participants come from ``from``, ``recipient`` and
``membersAdded``; ``role: bot`` (or ``skill``) is ``bot``, anyone else
``customer``; bot messages are ``bot: true``, ``outbound``, people's
``inbound``. ``timestamp`` (UTC) gives ``at`` and ``localTimestamp`` its
``at_offset``; ``replyToId`` gives ``reply_to``; card and file
``attachments`` become attachments (card content in ``extra``, its
``fallbackText`` or ``text`` as attachment text). Other fields stay in
``extra``.

Writing (``write``) produces one ``.transcript`` per conversation; what
activities cannot carry (roles, offsets, flags, extras) travels in
``channelData.chatvault`` and in a leading ``event`` activity named
``chatvault.conversation``, which this reader picks up again, so a written
conversation reads back identical.

A conversation with more activities than one record holds is refused and
reported (:mod:`vault.sources.limits`), never cut short.

Cannot map: the contents of files behind ``contentUrl`` (not in transcripts).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import ReadOptions, load_json, long_id_problem, record_id, unique_id

DESCRIPTION = "Microsoft Bot Framework .transcript (JSON array of activities)"
FOLDER_RULE = "*.transcript"

META_KEY = "chatvault"
META_EVENT = "chatvault.conversation"
_SKIPPED = ("typing", "trace")
_MAPPED = {"type", "id", "timestamp", "localTimestamp", "from", "text", "replyToId",
           "attachments", "conversation"}
_BOT_ROLES = ("bot", "skill")


def wants(path: Path) -> bool:
    return path.suffix.lower() == ".transcript"


def near_miss(path: Path) -> str | None:
    """A transcript saved as ``.json`` (sniffed from its start)."""
    if path.suffix.lower() != ".json":
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[") and b'"conversation"' in head:
        return ("botframework folder sources read *.transcript files; give this file itself "
                "as the source path (or rename it) to read it")
    return None


def _account(value: Any) -> dict[str, Any] | None:
    """An account object with a usable id; anything else (no id, ``""``, not an object) is
    no account, as when the field is absent (the activity's text is kept either way)."""
    ok = isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]
    return value if ok else None


def _members(value: Any) -> list[Any]:
    """``membersAdded`` as a list; another value is no members (it stays in ``extra``)."""
    return value if isinstance(value, list) else []


class _Conversation:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.people: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.skipped: dict[str, int] = {}
        self.ids: set[str] = set()  # message ids given out
        self.channel: str | None = None
        self.meta: dict[str, Any] | None = None

    def message_id(self, raw: str) -> str:
        """A message id for ``raw`` unique in the conversation: an id seen before (an
        activity logged twice, a tool's fixed id) gets ``#2``, ``#3``...; one too long
        for a record is shortened (:func:`vault.sources.record_id`)."""
        return unique_id(record_id(raw), self.ids)

    def person(self, account: dict[str, Any] | None,
               said: Callable[[str], None] | None = None) -> str | None:
        """The participant id of ``account``; ``said`` reports an id too long for one."""
        if account is None:
            return None
        raw, role = account["id"], account.get("role")
        pid = record_id(raw)
        known = self.people.get(pid)
        if known is None:
            if pid != raw and said is not None:
                said(raw)
            self.people[pid] = known = records.participant(
                pid, "customer", platform_ids={"botframework": raw},
                extra={k: v for k, v in account.items() if k not in ("id", "name", "role")})
        if role in _BOT_ROLES:
            known["role"] = "bot"
        if isinstance(account.get("name"), str) and "name" not in known:
            known["name"] = account["name"]
        return pid


def _attachments(items: Any) -> list[dict[str, Any]]:
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        text = None
        if isinstance(content, dict):
            text = content.get("fallbackText") or content.get("text")
        out.append(records.attachment(
            name=item.get("name"), type=item.get("contentType"), url=item.get("contentUrl"),
            text=text if isinstance(text, str) else None,
            extra={k: v for k, v in item.items() if k not in ("name", "contentType",
                                                              "contentUrl")}))
    return out


def _times(act: dict[str, Any]) -> tuple[str, str | None]:
    moment = timestamps.parse(act["timestamp"])
    at, offset = timestamps.format_utc(moment), timestamps.format_offset(moment)
    local = act.get("localTimestamp")
    if isinstance(local, str):
        try:
            offset = timestamps.format_offset(timestamps.parse(local))
        except timestamps.TimestampError:
            pass
    return at, offset


def _is_meta(value: Any) -> bool:
    """Whether ``value`` is the conversation this module's ``write`` put in its event.

    Anything else under that name (edited by hand, another tool) is read as any
    event, so a bad one cannot refuse the conversation; so is a ``chatvault``
    message in ``channelData`` without a string ``id`` and ``at``.
    """
    return (isinstance(value, dict) and isinstance(value.get("conversation_id"), str)
            and isinstance(value.get("started_at"), str)
            and isinstance(value.get("participants"), list))


def _add(conv: _Conversation, n: int, act: dict[str, Any], path: Path,
         options: ReadOptions) -> None:
    kind = act.get("type")
    if kind in _SKIPPED:
        conv.skipped[kind] = conv.skipped.get(kind, 0) + 1
        return
    if kind == "event" and act.get("name") == META_EVENT and _is_meta(act.get("value")):
        conv.meta = act["value"]
        return
    if not isinstance(act.get("timestamp"), str):
        options.problem(path, f"activity {n}", "a 'timestamp' string")
        return
    try:
        at, offset = _times(act)
    except timestamps.TimestampError as exc:
        options.problem(path, f"activity {n}", f"an ISO 8601 'timestamp' ({exc})")
        return
    text = act.get("text", "")
    if not isinstance(text, str):
        options.problem(path, f"activity {n}", "'text' as a string")
        return
    channel = act.get("channelId")
    conv.channel = conv.channel or (channel if isinstance(channel, str) else None)

    def said(raw: str) -> None:
        long_id_problem(options, path, f"activity {n}", "an account id", raw,
                        "platform_ids.botframework")

    sender = conv.person(_account(act.get("from")), said)
    conv.person(_account(act.get("recipient")), said)
    for member in _members(act.get("membersAdded")):
        conv.person(_account(member), said)
    mid = conv.message_id(str(act.get("id") or f"n{n}"))
    if mid != act.get("id") and isinstance(act.get("id"), str) and act["id"]:
        if record_id(act["id"]) != act["id"]:
            long_id_problem(options, path, f"activity {n}", "an activity id", act["id"],
                            "extra.id_in_export")
        act = {**act, "id_in_export": act["id"]}

    channel_data = act.get("channelData")
    mine = channel_data.get(META_KEY) if isinstance(channel_data, dict) else None
    if isinstance(mine, dict) and all(isinstance(mine.get(k), str) for k in ("id", "at")):
        conv.messages.append({**mine, "text": text})
        return
    extra = {k: v for k, v in act.items() if k not in _MAPPED}
    if sender is None and act.get("from") is not None:
        extra["from"] = act["from"]  # an account with no usable id: kept as written
    fields: dict[str, Any] = {"at_offset": offset, "extra": extra,
                              "attachments": _attachments(act.get("attachments"))}
    if isinstance(act.get("replyToId"), str):
        fields["reply_to"] = act["replyToId"]
    if kind != "message" or sender is None:
        fields.update(system=True, content_type="event")
        conv.messages.append(records.message(mid, at, None, text, **fields))
        return
    bot = conv.people[sender]["role"] == "bot"
    fields.update(direction="outbound" if bot else "inbound", bot=True if bot else None)
    if fields["attachments"] and not text:
        fields["content_type"] = "card"
    conv.messages.append(records.message(mid, at, sender, text, **fields))


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    data = load_json(path)
    if not isinstance(data, list):
        raise UnreadableExport("expected a JSON array of activities", path=path)
    convs: dict[str, _Conversation] = {}
    for n, act in enumerate(data):
        if not isinstance(act, dict):
            options.problem(path, f"activity {n}", "an activity object")
            continue
        ref = act.get("conversation")
        cid = ref.get("id") if isinstance(ref, dict) else None
        cid = cid if isinstance(cid, str) and cid else path.stem
        conv = convs.setdefault(cid, _Conversation(cid))
        _add(conv, n, act, path, options)

    good = 0
    for conv in convs.values():
        built = _build(conv)
        if built is not None:
            good += 1
            yield built
    if not good:
        raise UnreadableExport("no activity could be read as a message", path=path)


def _build(conv: _Conversation) -> dict[str, Any] | None:
    if conv.meta is not None:
        return {**conv.meta, "messages": conv.messages}
    if not conv.messages:
        return None
    for msg in conv.messages:
        if msg.get("from") and conv.people[msg["from"]]["role"] == "bot":
            msg.update(bot=True, direction="outbound")
    extra = {"skipped": conv.skipped} if conv.skipped else None
    return records.conversation(conv.cid, min(m["at"] for m in conv.messages),
                                list(conv.people.values()), conv.messages,
                                platform="botframework", channel=conv.channel, extra=extra)


# -- writing -------------------------------------------------------------------------

def _activity(cid: str, msg: dict[str, Any], people: dict[str, Any]) -> dict[str, Any]:
    act: dict[str, Any] = {"type": "message", "id": msg["id"], "timestamp": msg["at"],
                           "conversation": {"id": cid}, "text": msg["text"]}
    sender = people.get(msg["from"]) if msg.get("from") is not None else None
    if sender is not None:
        role = "bot" if sender["role"] == "bot" else "user"
        act["from"] = {"id": sender["id"], "name": sender.get("name"), "role": role}
    if msg.get("reply_to"):
        act["replyToId"] = msg["reply_to"]
    act["channelData"] = {META_KEY: {k: v for k, v in msg.items() if k != "text"}}
    return act


def write(conversations: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One ``<conversation id>.transcript`` per conversation under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for conv in conversations:
        cid = conv["conversation_id"]
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", cid)[:100].strip("._") or "conversation"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name)
        people = {p["id"]: p for p in conv["participants"]}
        meta = {k2: v for k2, v in conv.items() if k2 != "messages"}
        head = {"type": "event", "name": META_EVENT, "value": meta,
                "timestamp": conv["started_at"], "conversation": {"id": cid}}
        acts = [head] + [_activity(cid, m, people) for m in conv["messages"]]
        target = out_dir / f"{name}.transcript"
        target.write_bytes(orjson.dumps(acts, option=orjson.OPT_INDENT_2))
        written.append(target)
    return written
