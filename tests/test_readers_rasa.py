"""Rasa tracker reader: the corpus tracker and written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_readers import corpus_file, events, messages, read_all, texts
from vault.errors import UnreadableExport


def test_corpus_moodbot_tracker() -> None:
    convs, opts = read_all(corpus_file("rasa/tracker_moodbot.json"), "rasa")
    assert opts.problems == []
    assert len(convs) == 1
    conv = convs[0]
    assert conv["conversation_id"] == "mysender"
    assert len(messages(convs)) == 2
    assert texts(convs) == ["/greet", "/mood_great"]
    assert [e["extra"]["name"] for e in events(convs)] == ["utter_greet", "utter_happy"]
    assert len(conv["participants"]) == 2
    assert {p["id"]: p["role"] for p in conv["participants"]} == {"mysender": "customer",
                                                                 "bot": "bot"}
    assert conv["extra"]["skipped"] == 3  # action_listen
    assert messages(convs)[0]["at"] == "2018-02-05T09:08:46.200036Z"
    assert messages(convs)[0]["extra"]["parse_data"]["intent"]["name"] == "greet"
    assert conv["started_at"] == "2018-02-05T09:08:46.200036Z"


def tracker(sender: str, events_: list) -> dict:
    return {"sender_id": sender, "events": events_}


def test_bot_text_slots_and_malformed_events(tmp_path: Path) -> None:
    evs = [{"event": "user", "timestamp": 1.5, "text": "hi, I am ana@example.org"},
           {"event": "bot", "timestamp": 2, "text": "Hello!", "data": {"buttons": []}},
           {"event": "slot", "timestamp": 3, "name": "email", "value": "ana@example.org"},
           {"event": "user", "timestamp": "later", "text": "bad time"},
           {"no": "event"}]
    path = tmp_path / "trackers.json"
    path.write_text(json.dumps([tracker("ana", evs), {"events": []}]), encoding="utf-8")
    convs, opts = read_all(path, "rasa")
    assert texts(convs) == ["hi, I am ana@example.org", "Hello!"]
    bot = messages(convs)[1]
    assert bot["from"] == "bot" and bot["bot"] is True and bot["direction"] == "outbound"
    slot = events(convs)[0]
    assert slot["from"] is None and slot["extra"]["value"] == "ana@example.org"
    assert [p.position for p in opts.problems] == [
        "tracker 0: events[3]", "tracker 0: events[4]", "tracker 1"]


@pytest.mark.parametrize("content", ["", "[]", "{}", '{"sender_id": "x", "events": []}'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tracker.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="tracker.json"):
        read_all(path, "rasa")
