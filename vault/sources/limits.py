"""Conversations too large to be one record: split per calendar month, or refused.

One record holds at most ``records.MAX_ITEMS`` messages and
``records.MAX_RECORD_BYTES`` bytes in canonical form; the bundle writer and
the vault refuse anything larger. A reader never cuts a conversation short:
everything it builds goes through :func:`fit` (called by
:func:`vault.sources.read`), which lets it through, splits it, or refuses
it out loud. Both limits are read when a conversation is checked, never
copied at import.

Splitting, for the chat formats whose module sets ``SPLIT_BY_MONTH``
(Telegram, WhatsApp, Messenger: one chat can run for years). The messages
are grouped by the calendar month of their time in UTC and each month
becomes a conversation with the id ``<id>#YYYY-MM``. A month that has
ended does not change again, so its part keeps its id and its bytes while
the chat grows: only the current month's part is sealed again by the next
export. Each part keeps the conversation's fields (title, channel,
platform, extra...), lists the participants who wrote in that month plus
those who wrote nowhere in the chat (members, actors of notices), starts
at its first message, and says where it comes from in ``extra.part``:
``{"of": "<id>", "month": "YYYY-MM"}``. A reply may point to a message in
an earlier part, as Slack replies point across days.

The switch. A chat is split only once it no longer fits; until then it is
the one conversation ``<id>``. The export that first splits it seals the
parts next to what the vault already holds under ``<id>`` (the chat as it
was when it still fitted): nothing is lost, and the older messages are
held twice until retention or an erasure removes the old whole.

Refusing, for every other format (a ticket, a tracker, a Slack channel-day
cannot be split on a boundary that keeps its meaning) and for one month
still too large on its own: the conversation or part is left out and
reported as a problem naming the file, the conversation and the count or
size. Like any problem, it makes ``sources convert`` and ``export run``
exit 3.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vault import canonical, records

if TYPE_CHECKING:
    from vault.sources import ReadOptions

_MONTH = re.compile(r"^\d{4}-\d{2}")


def excess(conv: dict[str, Any], measure: bool = True) -> str | None:
    """Why ``conv`` cannot be one record, or None when it fits.

    With ``measure`` false only the counts are checked (the caller knows the
    record is small, e.g. a JSONL line well under the byte limit).
    """
    limit = records.MAX_ITEMS
    for key in ("messages", "participants"):
        items = conv.get(key)
        if isinstance(items, list) and len(items) > limit:
            return f"{len(items):,} {key}, more than the {limit:,} one record holds"
    if not measure:
        return None
    try:
        size = len(canonical.dumps(conv))
    except canonical.CanonicalError:
        return None  # validation names the field at fault
    cap = records.MAX_RECORD_BYTES
    if size > cap:
        return f"{size:,} bytes as a record, more than the {cap:,} one record holds"
    return None


def fit(conv: Any, path: Path, options: "ReadOptions", *, split: bool,
        measure: bool = True) -> Iterator[Any]:
    """``conv`` itself when it fits; else its monthly parts (``split``) or nothing.

    Whatever is left out is reported through ``options.problem`` as refused.
    Anything that is not a conversation object passes through untouched for
    validation to report.
    """
    if not isinstance(conv, dict) or not isinstance(conv.get("messages"), list):
        yield conv
        return
    why = excess(conv, measure)
    if why is None:
        yield conv
        return
    cid = conv.get("conversation_id")
    if not split:
        options.problem(path, f"conversation {cid}", f"one record at most; it has {why}: "
                        "left out, nothing of it was read", refused=True)
        return
    parts = list(months(conv))
    if not parts:
        options.problem(path, f"conversation {cid}", f"one record at most; it has {why} "
                        "and its message times cannot be split by month: left out",
                        refused=True)
        return
    for part in parts:
        why = excess(part)
        if why is not None:
            options.problem(path, f"conversation {part['conversation_id']}",
                            f"one record at most for one month; it has {why}: left out",
                            refused=True)
            continue
        yield part


def months(conv: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The parts of ``conv``, one per calendar month (UTC) of its messages, oldest first.

    Yields nothing when a message has no usable time (the caller refuses).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for msg in conv["messages"]:
        at = msg.get("at") if isinstance(msg, dict) else None
        if not isinstance(at, str) or not _MONTH.match(at):
            return
        groups.setdefault(at[:7], []).append(msg)

    writers = {m.get("from") for m in conv["messages"]}
    people = [p for p in conv.get("participants") or [] if isinstance(p, dict)]
    silent = {p.get("id") for p in people} - writers
    cid = str(conv.get("conversation_id"))
    for month in sorted(groups):
        messages = groups[month]
        wrote = {m.get("from") for m in messages}
        part = {k: v for k, v in conv.items() if k not in ("messages", "participants")}
        part["conversation_id"] = f"{cid}#{month}"
        part["started_at"] = min(m["at"] for m in messages)
        part["participants"] = [p for p in people if p.get("id") in wrote or p.get("id") in silent]
        part["messages"] = messages
        extra = part.get("extra")
        part["extra"] = {**(extra if isinstance(extra, dict) else {}),
                         "part": {"of": cid, "month": month}}
        yield part
