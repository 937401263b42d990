"""Intercom reader: the corpus webhook and written conversation fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_readers import corpus_file, events, found, messages, read_all, texts
from vault.errors import UnreadableExport


def test_corpus_webhook_redacted_part() -> None:
    convs, opts = read_all(corpus_file("intercom/conversation_part_redacted.json"),
                           "intercom")
    assert opts.problems == []
    assert len(convs) == 1
    conv = convs[0]
    assert conv["conversation_id"] == "215472621202693"
    assert conv["status"] == "open"
    assert conv["customer_id"] == "5e68ece4-0ec8-4792-baac-02deba39e7fe"
    assert len(messages(convs)) == 2
    assert len(conv["participants"]) == 2
    assert {p["id"]: p["role"] for p in conv["participants"]} == {
        "696205460674dbb9050aa7fd": "customer", "9608799": "agent"}
    assert texts(convs) == ["helklo", "This message was deleted"]
    source, part = messages(convs)
    assert source["extra"]["html"] == "<p>helklo</p>" and source["direction"] == "inbound"
    assert part["extra"]["html"] == "<p><i>This message was deleted</i></p>"
    assert part["deleted"] is True and part["at"] == "2026-01-10T08:13:32Z"
    assert conv["extra"]["notification"]["topic"] == "conversation_part.redacted"
    assert found(convs).emails == ["admin@example.com"]


def part(pid: str, part_type: str, body: object, author: dict, **fields: object) -> dict:
    return {"type": "conversation_part", "id": pid, "part_type": part_type, "body": body,
            "created_at": 1709287200 + int(pid), "author": author, **fields}


ADMIN = {"type": "admin", "id": "7", "name": "Ben Agent", "email": "ben@example.com"}
FIN = {"type": "bot", "id": "99", "name": "Fin", "is_ai_answer": True}


def conversation(parts: list, **fields: object) -> dict:
    return {"type": "conversation", "id": "c1", "created_at": 1709287200, "state": "closed",
            "tags": {"type": "tag.list", "tags": [{"type": "tag", "name": "refund"}]},
            "source": {"type": "conversation", "id": "s1", "body": "<p>Hi &amp; help</p>",
                       "author": {"type": "user", "id": "u1", "email": "ana@example.org"}},
            "contacts": {"contacts": [{"type": "contact", "id": "u1", "external_id": "cust-9",
                                       "phone": "+44 7700 900123",
                                       "location": {"country": "United Kingdom"},
                                       "browser": "firefox"}]},
            "conversation_parts": {"conversation_parts": parts}, **fields}


def test_notes_bots_events_and_list_shape(tmp_path: Path) -> None:
    parts = [part("1", "note", "<p>internal: VIP</p>", ADMIN),
             part("2", "comment", "<p>Refund sent</p>", FIN,
                  attachments=[{"name": "r.pdf", "content_type": "application/pdf",
                                "filesize": 10, "url": "https://x/r.pdf"}]),
             part("3", "close", None, ADMIN), {"id": None}]
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"type": "conversation.list",
                                "conversations": [conversation(parts)]}), encoding="utf-8")
    convs, opts = read_all(path, "intercom")
    conv = convs[0]
    assert conv["tags"] == ["refund"] and conv["status"] == "closed"
    source, note, reply = messages(convs)
    assert source["text"] == "Hi & help"
    assert note["visibility"] == "private" and note["direction"] == "internal"
    assert reply["bot"] is True and reply["ai"] is True
    assert reply["attachments"][0]["size"] == 10
    assert events(convs)[0]["from"] == "7" and events(convs)[0]["extra"]["part_type"] == "close"
    customer = next(p for p in conv["participants"] if p["role"] == "customer")
    assert customer["session"] == {"location": {"country": "United Kingdom"},
                                   "browser": "firefox"}
    assert customer["customer_id"] == "cust-9" and conv["customer_id"] == "cust-9"
    assert [p.position for p in opts.problems] == ["conversation c1: parts[3]"]


@pytest.mark.parametrize("content", ["", "[]", "{}", '{"type": "conversation.list"}',
                                     '{"type": "conversation", "id": "x"}'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "intercom.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="intercom.json"):
        read_all(path, "intercom")
