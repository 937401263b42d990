"""Telegram reader: the corpus files and written fixtures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_readers import corpus_file, events, found, messages, names, read_all, texts
from conftest import run_cli
from vault.errors import UnreadableExport


def test_corpus_single_chat() -> None:
    path = corpus_file("telegram/result.json")
    convs, opts = read_all(path, "telegram")
    assert opts.problems == []
    assert len(convs) == 1
    assert convs[0]["conversation_id"] == "5965280513"
    assert len(messages(convs)) == 4
    assert names(convs) == ["Jimmeny Marvelton", "Batman & Robin"]
    raw = json.loads(path.read_text("utf-8"))
    assert texts(convs) == [m["text"] for m in raw["messages"]]
    first = messages(convs)[0]
    # date 13:11:23 local, date_unixtime 1692821483 = 20:11:23 UTC
    assert (first["at"], first["at_offset"]) == ("2023-08-23T20:11:23Z", "-07:00")


def test_corpus_full_export_with_entity_text() -> None:
    convs, opts = read_all(corpus_file("telegram/test_batch_export.json"), "telegram")
    assert opts.problems == []
    assert len(convs) == 1
    assert convs[0]["title"] == "Chatname"
    assert len(messages(convs)) == 2
    assert names(convs) == ["Author 1", "Author 2"]
    assert texts(convs) == ["Minimal Message", "Link:https://telegram.org/"]
    assert messages(convs)[0]["at"] == "2018-12-05T10:39:10Z"


def chat(messages_: list, **fields: object) -> dict:
    return {"name": "Ana Example", "type": "personal_chat", "id": 42, "messages": messages_,
            **fields}


def msg(mid: int, text: object = "hi", **fields: object) -> dict:
    return {"id": mid, "type": "message", "date": "2024-03-01T10:00:00",
            "date_unixtime": str(1709287200 + mid), "from": "Ana Example",
            "from_id": "user42", "text": text, **fields}


def dump(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_malformed_messages_reported_and_rest_read(tmp_path: Path) -> None:
    path = dump(tmp_path, chat([msg(1), msg(2, text=12), "not an object",
                                {"id": 4, "type": "message", "text": "no date"}, msg(5)]))
    convs, opts = read_all(path, "telegram")
    assert [m["id"] for m in messages(convs)] == ["1", "5"]
    assert [p.position for p in opts.problems] == [
        "chat 42: messages[1]", "messages[2]", "chat 42: messages[3]"]


def test_a_chat_left_out_whole_is_a_refusal_in_convert_as_in_export(tmp_path: Path) -> None:
    """A chat whose messages are no list, or a chat that is no object, is data left out."""
    export = {"personal_information": {"user_id": 7},
              "chats": {"list": [chat([msg(1)]), {"id": 9, "messages": "lost"}, "junk"]}}
    path = dump(tmp_path, export)
    convs, opts = read_all(path, "telegram")
    assert len(convs) == 1
    assert [(p.position, p.refused) for p in opts.problems] == [
        ("chat 9", True), ("chats[2]", True)]
    out = tmp_path / "out.jsonl"
    done = run_cli("sources", "convert", path, "-f", "telegram", "-o", out, "--json")
    assert done.code == 3, done.err
    assert done.json()["refused"] == 2 and done.json()["conversations"] == 1
    assert len(out.read_bytes().splitlines()) == 1, "what could be read is kept"


@pytest.mark.parametrize("content", ["", "[]", "{}", "not json", '{"messages": 3}'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "result.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="result.json"):
        read_all(path, "telegram")


def test_media_edits_replies_and_roles(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "scan.pdf").write_bytes(b"%PDF")
    entries = [
        msg(1, "please see", file="files/scan.pdf", mime_type="application/pdf",
            file_name="scan.pdf"),
        msg(2, "", photo="(File not included. Change data exporting settings to download.)"),
        msg(3, "fixed", edited="2024-03-01T10:05:00", edited_unixtime="1709287500",
            reply_to_message_id=1, **{"from": "Agent", "from_id": "user7"}),
    ]
    convs, _ = read_all(dump(tmp_path, chat(entries)), "telegram")
    first, second, third = messages(convs)
    assert first["attachments"][0]["sha256"] == hashlib.sha256(b"%PDF").hexdigest()
    assert first["attachments"][0]["type"] == "application/pdf"
    assert second["attachments"][0]["omitted"] is True and second["content_type"] == "media"
    assert third["edited_at"] == "2024-03-01T10:05:00Z" and third["reply_to"] == "1"
    roles = {p["name"]: p["role"] for p in convs[0]["participants"]}
    assert roles == {"Ana Example": "customer", "Agent": "agent"}
    assert [m["direction"] for m in messages(convs)] == ["inbound", "inbound", "outbound"]


def test_full_export_owner_is_agent_and_service_actor_kept(tmp_path: Path) -> None:
    group = {"name": "Support", "type": "private_group", "id": 9, "messages": [
        {"id": 1, "type": "service", "date": "2024-03-01T09:00:00",
         "date_unixtime": "1709283600", "actor": "Carla", "actor_id": "user5",
         "action": "invite_members", "members": ["Ana"], "text": ""},
        msg(2, "owner speaking", **{"from": "Me", "from_id": "user1"}),
        msg(3, "phone +44 7700 900123, mail ana@example.org"),
    ]}
    export = {"personal_information": {"user_id": 1, "first_name": "Me"},
              "chats": {"list": [group]}, "left_chats": {"list": []}}
    convs, _ = read_all(dump(tmp_path, export), "telegram")
    roles = {p["name"]: p["role"] for p in convs[0]["participants"]}
    assert roles == {"Carla": "customer", "Me": "agent", "Ana Example": "customer"}
    assert events(convs)[0]["from"] is None
    assert events(convs)[0]["extra"]["action"] == "invite_members"
    ids = found(convs, None)
    assert ids.emails == ["ana@example.org"] and ids.phones == ["+447700900123"]


def test_local_date_only_uses_the_source_time_zone(tmp_path: Path) -> None:
    entry = {"id": 1, "type": "message", "date": "2024-07-01T10:00:00", "from": "Ana",
             "from_id": "user42", "text": "hi"}
    convs, _ = read_all(dump(tmp_path, chat([entry])), "telegram", timezone="Europe/Berlin")
    assert (messages(convs)[0]["at"], messages(convs)[0]["at_offset"]) == (
        "2024-07-01T08:00:00Z", "+02:00")


def test_folder_of_exports_reads_result_files(tmp_path: Path) -> None:
    for n in (1, 2):
        folder = tmp_path / f"ChatExport_{n}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(chat([msg(1)], id=n)), "utf-8")
        (folder / "other.json").write_text("{}", "utf-8")
    convs, _ = read_all(tmp_path, "telegram")
    assert [c["conversation_id"] for c in convs] == ["1", "2"]


# -- properties: entity text and service messages (cases 07 and 08, as families) ----------

_piece_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_entity_type = st.sampled_from(["plain", "bold", "italic", "link", "text_link", "mention",
                                "phone", "email", "code", "pre", "spoiler", "custom_emoji"])


@st.composite
def _piece(draw: st.DrawFn) -> object:
    """A plain string, or an entity object as Telegram writes it (extra keys and all)."""
    text = draw(_piece_text)
    if draw(st.booleans()):
        return text
    entity: dict = {"type": draw(_entity_type), "text": text}
    if entity["type"] == "text_link":
        entity["href"] = "https://example.org/" + draw(st.text("abc", max_size=5))
    if entity["type"] == "pre" and draw(st.booleans()):
        entity["language"] = "python"
    if entity["type"] == "custom_emoji":
        entity["document_id"] = "(File not included.)"
    return entity


def _joined(pieces: list) -> str:
    return "".join(p if isinstance(p, str) else p["text"] for p in pieces)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts_=st.lists(st.lists(_piece(), max_size=6), min_size=1, max_size=4),
       with_entities=st.booleans())
def test_any_list_of_pieces_reads_as_their_concatenation(
        tmp_path_factory: pytest.TempPathFactory, texts_: list[list],
        with_entities: bool) -> None:
    entries = []
    for n, pieces in enumerate(texts_, 1):
        extra = {"text_entities": [p if isinstance(p, dict) else {"type": "plain", "text": p}
                                   for p in pieces]} if with_entities else {}
        entries.append(msg(n, pieces, **extra))
    path = dump(tmp_path_factory.mktemp("tg-pieces"), chat(entries))
    convs, opts = read_all(path, "telegram")
    assert opts.problems == []
    assert texts(convs) == [_joined(pieces) for pieces in texts_]


_service_action = st.sampled_from(["create_group", "invite_members", "remove_members",
                                   "pin_message", "phone_call", "edit_group_title",
                                   "migrate_to_supergroup", "join_group_by_link", "clear_history"])


@st.composite
def _service(draw: st.DrawFn, mid: int) -> dict:
    """A service entry: never a 'from'; actor, actor_id and text each may be missing."""
    entry: dict = {"id": mid, "type": "service", "date": "2024-03-01T09:00:00",
                   "date_unixtime": str(1709283600 + mid), "action": draw(_service_action)}
    if draw(st.booleans()):
        entry["actor"] = draw(st.none() | _piece_text)
    if draw(st.booleans()):
        entry["actor_id"] = draw(st.none()
                                 | st.sampled_from(["user5", "user42", "channel9", ""]))
    if draw(st.booleans()):
        entry["text"] = draw(_piece_text | st.lists(_piece(), max_size=3))
    if entry["action"] in ("invite_members", "remove_members") and draw(st.booleans()):
        entry["members"] = draw(st.lists(st.none() | _piece_text, max_size=3))
    return entry


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kinds=st.lists(st.booleans(), min_size=1, max_size=8),
       personal=st.booleans())
def test_service_messages_without_from_never_stop_a_read(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, kinds: list[bool],
        personal: bool) -> None:
    entries = [data.draw(_service(n)) if service else msg(n, f"message {n}")
               for n, service in enumerate(kinds, 1)]
    value = chat(entries) if personal else {
        "personal_information": {"user_id": 1}, "chats": {"list": [
            {"name": "Support", "type": "private_group", "id": 9, "messages": entries}]}}
    path = dump(tmp_path_factory.mktemp("tg-service"), value)
    convs, opts = read_all(path, "telegram")
    assert opts.problems == []
    [conv] = convs
    assert len(conv["messages"]) == len(entries)
    for m, entry in zip(conv["messages"], entries):
        assert m["id"] == str(entry["id"])
        if entry["type"] == "service":
            assert m["from"] is None and m["system"] is True
            text = entry.get("text", "")
            assert m["text"] == (text if isinstance(text, str) else _joined(text))
            assert m["extra"]["action"] == entry["action"]
        else:
            assert m["text"] == entry["text"] and m["from"] == "user42"


# -- property: any JSON value in any field never stops a read -----------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                     | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
_MESSAGE_FIELDS = ["id", "type", "from", "from_id", "edited", "edited_unixtime",
                   "reply_to_message_id", "forwarded_from", "actor", "actor_id", "photo",
                   "file", "file_name", "file_size", "mime_type", "media_type",
                   "text_entities", "via_bot"]
_EXPORT_FIELDS = ["personal_information", "personal_information.user_id", "left_chats",
                  "left_chats.list", "chats.about", "chats.list.0.id", "chats.list.0.name",
                  "chats.list.0.type", "chats.list.1", "chats.list.1.messages", "about"]


def _put(doc: object, where: str, value: object) -> None:
    *path, last = where.split(".")
    node = doc
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


def _full_export() -> dict:
    return {"about": "Telegram export", "personal_information": {"user_id": 1},
            "chats": {"about": "chats", "list": [
                chat([msg(n, f"message {n}") for n in range(1, 4)]),
                chat([msg(n, f"group {n}") for n in range(1, 4)], id=9, type="private_group",
                     name="Support")]},
            "left_chats": {"about": "left", "list": [
                chat([msg(1, "left 1")], id=11, name="Old")]}}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_MESSAGE_FIELDS), value=_json, victim=st.integers(0, 2))
def test_any_json_in_any_message_field_never_stops_a_read(
        tmp_path_factory: pytest.TempPathFactory, where: str, value: object,
        victim: int) -> None:
    messages_ = [msg(n, f"message {n}", photo="photos/p.jpg", file_size=10) for n in range(3)]
    messages_[victim][where] = value
    path = dump(tmp_path_factory.mktemp("tg-any"), chat(messages_))
    convs, opts = read_all(path, "telegram")
    kept = texts(convs) + [m["text"] for c in convs for m in c["messages"] if m.get("system")]
    assert [t for t in kept if t != f"message {victim}"] == [
        f"message {n}" for n in range(3) if n != victim]
    assert f"message {victim}" in kept  # none of these fields is needed for the text
    assert all(not p.refused and p.position == f"chat 42: messages[{victim}]"
               for p in opts.problems), opts.problems


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_EXPORT_FIELDS), value=_json)
def test_any_json_in_the_export_s_parts_never_stops_a_read(
        tmp_path_factory: pytest.TempPathFactory, where: str, value: object) -> None:
    export = _full_export()
    _put(export, where, value)
    path = dump(tmp_path_factory.mktemp("tg-parts"), export)
    convs, opts = read_all(path, "telegram")
    kept = texts(convs)
    assert all(f"message {n}" in kept for n in range(1, 4)), opts.problems
    if not where.startswith("chats.list.1"):
        assert all(f"group {n}" in kept for n in range(1, 4)), opts.problems
    for problem in opts.problems:  # a part or a whole chat left unread is said, as refused
        assert problem.path == str(path)
        whole_chat = problem.position.startswith(("chats[", "chat ")) and (
            ": " not in problem.position)
        assert problem.refused == (problem.position in ("left_chats", "chats")
                                   or whole_chat), problem
    if "left 1" not in kept and isinstance(value, (bool, int, float, str)):
        assert [p.position for p in opts.problems] == ["left_chats"]


@pytest.mark.parametrize("part", ["personal_information", "left_chats"])
@pytest.mark.parametrize("value", [[1, 2], "text", 5, True])
def test_a_top_level_part_that_is_not_an_object_is_reported(tmp_path: Path, part: str,
                                                            value: object) -> None:
    export = _full_export()
    export[part] = value
    convs, opts = read_all(dump(tmp_path, export), "telegram")
    assert "message 1" in texts(convs) and "group 1" in texts(convs)
    [problem] = opts.problems
    assert problem.position == part and problem.path == str(tmp_path / "result.json")
    assert problem.refused == (part == "left_chats")  # chats may have been left out


def test_a_bad_edit_time_keeps_the_message(tmp_path: Path) -> None:
    convs, opts = read_all(dump(tmp_path, chat([msg(1, "kept", edited="never"),
                                                msg(2, "also", edited=None)])), "telegram")
    assert texts(convs) == ["kept", "also"]
    [problem] = opts.problems
    assert problem.position == "chat 42: messages[0]" and "kept without its edit" in str(
        problem)
    assert convs[0]["messages"][0]["extra"]["edited"] == "never"
