"""Rasa conversation trackers (JSON: one tracker, or a list of trackers).

A tracker is one conversation (id ``sender_id``) whose ``events`` list is
kept in its own order (event timestamps may step back slightly).

Mapping. ``user`` events are messages from the customer (``sender_id``),
``inbound``, with the NLU result (``parse_data``: intent, entities) in
``extra``; ``bot`` events are messages from the bot (``bot: true``,
``outbound``), buttons and other ``data`` in ``extra``. Every other event
the assistant took (actions such as ``utter_greet``, slots set, forms,
restarts...) is a system event; actions are attributed to the bot, the
rest has ``from: null``; the event's fields stay in ``extra``.
``action_listen`` (the bot waiting) and featurization markers carry nothing
and are left out (counted in ``extra.skipped``). Message ids are the
event's position, which stays stable as a tracker grows; the tracker's final
``slots`` and ``latest_input_channel`` are kept on the conversation.

A tracker with more events than one record holds is refused and reported
(:mod:`vault.sources.limits`), never cut short.

Cannot map: the text behind an ``utter_`` action when no ``bot`` event
follows it (the tracker does not hold it), agents (Rasa has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from vault import records, timestamps
from vault.errors import UnreadableExport
from vault.sources import ReadOptions, capped, epoch_text, load_json

DESCRIPTION = "Rasa tracker JSON (events: user, bot, actions, slots)"
FOLDER_RULE = "*.json"

BOT_ID = "bot"
MAX_TRACKERS = 100_000
_QUIET = {"user_featurization", "action_execution_rejected"}


def wants(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def _event(n: int, ev: dict[str, Any], customer: str) -> dict[str, Any] | None:
    kind = ev.get("event")
    at = epoch_text(ev.get("timestamp"))
    extra = {k: v for k, v in ev.items() if k not in ("event", "timestamp", "text")}
    text = ev["text"] if isinstance(ev.get("text"), str) else ""
    if kind == "user":
        return records.message(str(n), at, customer, text, direction="inbound",
                               extra=extra)
    if kind == "bot":
        return records.message(str(n), at, BOT_ID, text, direction="outbound", bot=True,
                               extra=extra)
    if kind in _QUIET or (kind == "action" and ev.get("name") == "action_listen"):
        return None
    extra["event"] = kind
    sender = BOT_ID if kind == "action" else None
    return records.message(str(n), at, sender, text, system=True, content_type="event",
                           bot=True if sender else None, extra=extra)


def _tracker(k: int, tracker: Any, path: Path, options: ReadOptions) -> dict[str, Any] | None:
    where = f"tracker {k}"
    if not isinstance(tracker, dict) or not isinstance(tracker.get("events"), list):
        options.problem(path, where, "a tracker object with an 'events' list")
        return None
    sender = tracker.get("sender_id")
    if not isinstance(sender, str) or not sender:
        options.problem(path, where, "a 'sender_id' string")
        return None

    messages, skipped = [], 0
    for n, ev in enumerate(tracker["events"]):
        if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
            options.problem(path, f"{where}: events[{n}]", "an event object with 'event'")
            continue
        try:
            msg = _event(n, ev, sender)
        except timestamps.TimestampError as exc:
            options.problem(path, f"{where}: events[{n}]", f"a Unix 'timestamp' ({exc})")
            continue
        if msg is None:
            skipped += 1
        else:
            messages.append(msg)
    if not messages:
        return None

    people = [records.participant(sender, "customer", platform_ids={"rasa": sender})]
    if any(m["from"] == BOT_ID for m in messages):
        people.append(records.participant(BOT_ID, "bot"))
    extra = {"slots": tracker.get("slots"), "latest_input_channel":
             tracker.get("latest_input_channel"), "skipped": skipped or None}
    return records.conversation(
        sender, min(m["at"] for m in messages), people, messages, platform="rasa",
        channel=tracker.get("latest_input_channel"),
        extra={k: v for k, v in extra.items() if v is not None})


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    data = load_json(path)
    trackers = data if isinstance(data, list) else [data]
    if not any(isinstance(t, dict) and "events" in t for t in trackers):
        raise UnreadableExport("no tracker with an 'events' list: not a Rasa tracker",
                               path=path)
    good = 0
    for k, tracker in enumerate(capped(trackers, MAX_TRACKERS, path, "trackers", options)):
        conv = _tracker(k, tracker, path, options)
        if conv is not None:
            good += 1
            yield conv
    if not good:
        raise UnreadableExport("no tracker event could be read", path=path)
