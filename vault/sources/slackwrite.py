"""Conversations written back as an unpacked Slack export (``restore open --format native``).

The reader (:mod:`vault.sources.slack`) reads what this writes back into
the same records: Slack's own message fields return where Slack keeps
them, and what Slack has no place for rides in each message's
``chatvault`` key and in ``chatvault.json``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import orjson

from vault import timestamps
from vault.sources import as_object, stable_id
from vault.sources.slack import META_FILE, META_KEY


def _ts(at: str) -> str:
    moment = timestamps.parse(at)
    return f"{int(moment.timestamp())}.{moment.microsecond:06d}"


def _dump(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def _native(msg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "message", "ts": _ts(msg["at"]), "text": msg["text"]}
    if msg.get("from") is not None:
        out["user"] = msg["from"]
    if msg.get("reply_to"):
        out["thread_ts"] = msg["reply_to"]
    if msg.get("edited_at"):
        out["edited"] = {"ts": _ts(msg["edited_at"])}
    mine = {k: v for k, v in msg.items() if k not in ("text", "extra")}
    extra = msg.get("extra")
    if isinstance(extra, dict) and extra:
        # Slack's own fields (subtype, bot_id, blocks...) go back where Slack has them
        spread = {k: v for k, v in extra.items() if k not in out and k != META_KEY}
        out.update(spread)
        mine["extra_keys"] = sorted(spread)
        rest = {k: v for k, v in extra.items() if k not in spread}
        if rest:
            mine["extra"] = rest
    elif "extra" in msg:
        mine["extra"] = extra
    out[META_KEY] = mine
    return out


def write(conversations: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``conversations`` as an unpacked Slack export under ``out_dir``."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    users: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {}
    for conv in conversations:
        # Slack's own channel-name alphabet: no dots, so never a root file's name
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", str(conv.get("channel") or
                                                   conv["conversation_id"]))[:80]
        base = base.strip("-") or "conversation"
        day = conv["started_at"][:10]
        folder, k = base, 1
        while f"{folder}/{day}.json" in meta:
            k += 1
            folder = f"{base}-{k}"
        rel = f"{folder}/{day}.json"
        meta[rel] = {k2: v for k2, v in conv.items() if k2 != "messages"}
        extra = as_object(conv.get("extra"))
        cid = extra.get("channel_id") if isinstance(extra.get("channel_id"), str) else (
            "C" + stable_id(folder)[:10].upper())
        people = [p["id"] for p in conv["participants"]]
        channels.setdefault(folder, {"id": cid, "name": folder, "members": people,
                                     "created": int(timestamps.parse(day + "T00:00:00Z")
                                                    .timestamp())})
        for p in conv["participants"]:
            users.setdefault(p["id"], {
                "id": p["id"], "name": p.get("name") or p["id"],
                "real_name": p.get("name") or "", "is_bot": p["role"] == "bot",
                "profile": {"real_name": p.get("name") or "", "email": p.get("email") or "",
                            "phone": p.get("phone") or ""}})
        written.append(_dump(out_dir / rel, [_native(m) for m in conv["messages"]]))
    written.append(_dump(out_dir / "users.json", list(users.values())))
    written.append(_dump(out_dir / "channels.json", list(channels.values())))
    written.append(_dump(out_dir / META_FILE, {"format": "chatvault slack metadata",
                                               "version": 1, "conversations": meta}))
    return written
