"""Messenger / Instagram reader: corpus files, fixtures, and mojibake properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest_readers import corpus_file, messages, names, read_all, texts
from vault.errors import UnreadableExport
from vault.sources.messenger import repair


def test_corpus_facebook_chat() -> None:
    path = corpus_file("facebook_messenger/facebook_chat.json")
    convs, opts = read_all(path, "messenger")
    assert opts.problems == []
    assert len(convs) == 1
    assert convs[0]["conversation_id"] == "inbox/User 1 and User 2 chat"
    assert len(messages(convs)) == 11
    assert names(convs) == ["User 1", "User 2"]
    raw = json.loads(path.read_text("utf-8"))["messages"]
    assert texts(convs) == [m.get("content", "") for m in reversed(raw)]
    ats = [m["at"] for m in messages(convs)]
    assert ats == sorted(ats) and ats[0] == "2023-02-04T22:17:02.673Z"
    photos = [m for m in messages(convs) if m.get("attachments")]
    assert len(photos) == 1 and photos[0]["attachments"][0]["name"] == "url_of_some_picture.jpg"


def test_corpus_instagram_group_with_mojibake() -> None:
    convs, opts = read_all(corpus_file("instagram_messenger/testlog.json"), "messenger")
    assert opts.problems == []
    assert len(messages(convs)) == 13
    assert names(convs) == ["John Doe", "J❤️hn Doe", "Jane Doe", "Lionel Messi", "❤️"]
    assert "Testing username with emoji: J❤️hn Doe" in texts(convs)
    assert "Testing message with emoji: ❤️" in texts(convs)
    reactions = [m["extra"]["reactions"] for m in messages(convs) if "reactions" in
                 m.get("extra", {})]
    assert reactions[0] == [{"reaction": "❤️", "actor": "J❤️hn Doe"},
                            {"reaction": "💖", "actor": "Jane Doe"}]
    same_ms = [m["id"] for m in messages(convs) if m["id"].startswith("1579359180000")]
    assert same_ms == ["1579359180000", "1579359180000.2"]
    assert sum(1 for m in messages(convs) if m.get("attachments")) == 3


def dump(folder: Path, value: object, name: str = "message_1.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_thread_split_over_files_is_one_conversation(tmp_path: Path) -> None:
    thread = tmp_path / "messages" / "inbox" / "ana_1"
    head = {"participants": [{"name": "Ana"}], "thread_path": "inbox/ana_1"}
    first = dump(thread, {**head, "messages": [
        {"sender_name": "Ana", "timestamp_ms": 3000, "content": "third"}]})
    second = dump(thread, {**head, "messages": [
        {"sender_name": "Ana", "timestamp_ms": 2000, "content": "second"},
        {"sender_name": "Ana", "timestamp_ms": 1000, "content": "first",
         "photos": [{"uri": "messages/inbox/ana_1/photos/p.jpg"}]}]}, "message_2.json")
    (thread / "photos").mkdir()
    (thread / "photos" / "p.jpg").write_bytes(b"img")
    from vault.sources import export_files, messenger

    assert messenger.wants(first) and not messenger.wants(second)
    assert export_files(tmp_path, "messenger") == [first]
    convs, _ = read_all(tmp_path, "messenger")
    assert len(convs) == 1 and texts(convs) == ["first", "second", "third"]
    att = messages(convs)[0]["attachments"][0]
    assert att["sha256"] == hashlib.sha256(b"img").hexdigest() and "omitted" not in att


def test_malformed_messages_reported_and_rest_read(tmp_path: Path) -> None:
    path = dump(tmp_path, {"participants": [], "messages": [
        {"sender_name": "Ana", "timestamp_ms": 2000, "content": "ok"},
        {"sender_name": "Ana", "timestamp_ms": "soon", "content": "bad time"},
        "junk", {"sender_name": "Ana", "timestamp_ms": 1000, "is_unsent": True}]})
    convs, opts = read_all(path, "messenger")
    assert texts(convs) == ["", "ok"]
    assert messages(convs)[0]["deleted"] is True
    assert sorted(p.position for p in opts.problems) == ["messages[1]", "messages[2]"]


@pytest.mark.parametrize("content", ["", "[]", '{"messages": []}', '{"title": "x"}'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "message_1.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="message_1.json"):
        read_all(path, "messenger")


# -- mojibake ---------------------------------------------------------------------------

def mojibake(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize("text", ["café", "Zoë Müller", "naïve", "Ångström", "ça va ?",
                                  "€5", "🙂", "日本語", "plain"])
def test_correct_text_is_never_changed(text: str) -> None:
    assert repair(text) == text
    assert repair(mojibake(text)) == text


@given(st.text())
def test_repair_undoes_mojibake(text: str) -> None:
    assert repair(mojibake(text)) == text


@given(st.text().filter(lambda t: any(ord(c) > 0xFF for c in t)))
def test_text_beyond_latin1_is_kept_and_repair_is_idempotent(text: str) -> None:
    assert repair(text) == text
    assert repair(repair(mojibake(text))) == text


_latin_word = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_categories=("Cc",)), min_size=1, max_size=12)


@given(st.lists(_latin_word, max_size=6))
def test_accented_text_without_adjacent_accents_is_kept(words: list[str]) -> None:
    text = " ".join(words)
    adjacent = any(ord(a) > 0x7F and ord(b) > 0x7F for a, b in zip(text, text[1:]))
    if not adjacent:
        assert repair(text) == text


def test_folder_walk_ignores_other_export_json(tmp_path: Path) -> None:
    dump(tmp_path / "inbox" / "ana_1", {"participants": [], "thread_path": "inbox/ana_1",
                                         "messages": [{"sender_name": "Ana",
                                                       "timestamp_ms": 1, "content": "x"}]})
    dump(tmp_path, {"autofill": []}, "autofill_information.json")
    convs, _ = read_all(tmp_path, "messenger")
    assert [c["conversation_id"] for c in convs] == ["inbox/ana_1"]
