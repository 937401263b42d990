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
    # the agent's reply was sent from support@example.com: the agent carries it (and the
    # message keeps it in extra), so subject search finds the agent by it
    agent = next(p for p in conv["participants"] if p["id"] == "510")
    assert agent["role"] == "agent" and agent["email"] == "support@example.com"
    assert last["from"] == "510" and last["extra"]["from_email"] == "support@example.com"
    assert found(convs).emails == ["support@example.com"]


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


def test_from_email_is_the_authors_email(tmp_path: Path) -> None:
    ticket = {"id": 9, "subject": "Mail", "requester_id": 1, "responder_id": 2,
              "created_at": "2024-03-01T10:00:00Z", "description_text": "hello",
              "requester": {"id": 1, "email": "ana@example.org"}}
    entries = [
        {"id": 1, "body_text": "greeting", "user_id": None, "from_email": None,
         "created_at": "2024-03-01T10:00:01Z"},
        {"id": 2, "body_text": "reply", "user_id": 2, "from_email": "Support@Example.com",
         "created_at": "2024-03-01T10:01:00Z"},
        {"id": 3, "body_text": "again", "user_id": 2, "from_email": "support@example.com",
         "created_at": "2024-03-01T10:02:00Z"},
        {"id": 4, "body_text": "me too", "user_id": 1, "incoming": True,
         "from_email": "ana.work@example.org", "created_at": "2024-03-01T10:03:00Z"},
        {"id": 5, "body_text": "auto", "user_id": None, "from_email": "help@example.com",
         "created_at": "2024-03-01T10:04:00Z"}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"ticket": ticket, "conversations": entries}),
                    encoding="utf-8")
    convs, opts = read_all(path, "freshdesk")
    assert opts.problems == []
    people = {p["id"]: p for p in convs[0]["participants"]}
    assert set(people) == {"1", "2", "email:help@example.com"}
    assert (people["2"]["role"], people["2"]["email"]) == ("agent", "Support@Example.com")
    assert "extra" not in people["2"]  # the same address again, written otherwise
    # the requester keeps her own e-mail; the other address she wrote from is listed
    assert people["1"]["email"] == "ana@example.org"
    assert people["1"]["extra"]["from_emails"] == ["ana.work@example.org"]
    bot = people["email:help@example.com"]
    assert (bot["role"], bot["email"]) == ("agent", "help@example.com")
    senders = [m["from"] for m in messages(convs)]
    assert senders == ["1", None, "2", "2", "1", "email:help@example.com"]
    assert all("from_email" in m["extra"] for m in messages(convs)[1:])
    assert found(convs).emails == ["ana@example.org", "support@example.com",
                                   "help@example.com"]
