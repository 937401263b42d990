"""Freshdesk reader: the corpus web-chat ticket and written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_readers import corpus_file, found, messages, read_all, texts
from vault.errors import UnreadableExport


def test_corpus_web_chat_ticket() -> None:
    path = corpus_file("freshdesk_webchat/web_chat_ticket_with_conversations.json")
    convs, opts = read_all(path, "freshdesk")
    assert opts.problems == []
    assert len(convs) == 1
    conv = convs[0]
    assert conv["conversation_id"] == "ticket-2101"
    assert conv["status"] == "open" and conv["extra"]["status_code"] == 2
    assert conv["title"] == "FD-IMPORT-WEBCHAT-002 — Brew temperature drops"
    assert len(messages(convs)) == 7  # the description and six conversation entries
    assert {p["id"]: p["role"] for p in conv["participants"]} == {"1101": "customer",
                                                                 "510": "agent"}
    raw = json.loads(path.read_text("utf-8"))
    assert texts(convs) == [raw["ticket"]["description_text"]] + [
        c["body_text"] for c in raw["conversations"]]
    greeting = messages(convs)[1]
    assert greeting["from"] is None and greeting["direction"] == "outbound"
    assert greeting["extra"]["html"] == "<div>Hello! How can we help you today?</div>"
    last = messages(convs)[-1]
    assert last["attachments"][0]["name"] == "freshdesk-validation-diagnostic.txt"
    assert last["attachments"][0]["size"] == 188
    assert found(convs).emails == []


def test_private_notes_requester_and_malformed_entries(tmp_path: Path) -> None:
    ticket = {"id": 7, "subject": "Refund", "status": 5, "requester_id": 1,
              "created_at": "2024-03-01T10:00:00Z", "description": "<p>Where is it?</p>",
              "requester": {"id": 1, "name": "Ana Example", "email": "Ana@Example.org",
                            "mobile": "07700 900123"},
              "conversations": [
                  {"id": 1, "body": "<p>VIP</p>", "private": True, "incoming": False,
                   "user_id": 2, "created_at": "2024-03-01T10:05:00Z"},
                  {"id": 2, "body_text": "no time", "user_id": 2},
                  "junk"]}
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps([ticket]), encoding="utf-8")
    convs, opts = read_all(path, "freshdesk", phone_region="GB")
    conv = convs[0]
    assert conv["status"] == "closed"
    description, note = messages(convs)
    assert description["text"] == "Where is it?" and description["from"] == "1"
    assert note["visibility"] == "private" and note["direction"] == "internal"
    assert note["text"] == "VIP" and note["extra"]["html"] == "<p>VIP</p>"
    ana = next(p for p in conv["participants"] if p["id"] == "1")
    assert (ana["name"], ana["email"], ana["phone"]) == ("Ana Example", "Ana@Example.org",
                                                         "07700 900123")
    ids = found(convs, "GB")
    assert ids.emails == ["ana@example.org"] and ids.phones == ["+447700900123"]
    assert [p.position for p in opts.problems] == ["ticket 7: conversations[1]",
                                                   "ticket 7: conversations[2]"]


@pytest.mark.parametrize("content", ["", "[]", "{}", '{"ticket": {"id": 1}}'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ticket.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="ticket.json"):
        read_all(path, "freshdesk")


def test_source_code_gives_the_channel(tmp_path: Path) -> None:
    ticket = {"id": 8, "subject": "Mail", "source": 1, "requester_id": 1,
              "created_at": "2024-03-01T10:00:00Z", "description_text": "hello"}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"ticket": ticket, "conversations": []}), encoding="utf-8")
    convs, _ = read_all(path, "freshdesk")
    assert convs[0]["channel"] == "email" and convs[0]["extra"]["source"] == 1
