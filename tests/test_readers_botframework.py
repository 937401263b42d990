"""Bot Framework transcript reader and writer: corpus files, fixtures, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_readers import (canonical, case_input, conversation_strategy, corpus_file,
                              events, messages, names, read_all, texts)
from vault.errors import UnreadableExport
from vault.sources import botframework


def test_corpus_add_item_with_button() -> None:
    path = corpus_file("botframework/addItemWithButton.transcript")
    convs, opts = read_all(path, "botframework")
    assert opts.problems == []
    assert len(convs) == 1
    conv = convs[0]
    assert conv["conversation_id"] == "83fa1400-e127-11ea-8037-9fd05751be53|livechat"
    assert conv["channel"] == "emulator"
    assert len(messages(convs)) == 5
    assert len(events(convs)) == 1  # the conversationUpdate
    assert conv["extra"]["skipped"] == {"trace": 6}
    assert sorted(names(convs)) == ["Bot", "User"]
    assert {p["name"]: p["role"] for p in conv["participants"]} == {"User": "customer",
                                                                   "Bot": "bot"}
    raw = [a for a in json.loads(path.read_text("utf-8")) if a["type"] == "message"]
    assert texts(convs) == [a.get("text", "") for a in raw]
    first = messages(convs)[0]
    assert (first["at"], first["at_offset"]) == ("2020-08-18T07:50:44.125Z", "+08:00")
    assert first["bot"] is True and first["direction"] == "outbound"
    assert first["reply_to"] == "8424f490-e127-11ea-b7a4-d305fa3d3abd"
    cards = [m for m in messages(convs) if m.get("content_type") == "card"]
    assert len(cards) == 2
    assert cards[0]["attachments"][0]["type"] == "application/vnd.microsoft.card.adaptive"


def test_corpus_chatdown_sample() -> None:
    path = corpus_file("botframework/cli.sample.transcript")
    convs, opts = read_all(path, "botframework")
    assert opts.problems == []
    assert len(messages(convs)) == 4
    assert len(events(convs)) == 2  # conversationUpdate, and a message with no 'from'
    assert names(convs) == ["Joe", "LulaBot"]
    assert convs[0]["extra"]["skipped"] == {"typing": 1}
    assert texts(convs)[0] == "Hi Joe!\r\nLulaBot->Susan: Hi Susan!\r\n\r\n" \
                              "[ConversationUpdate:membersremoved=Susan]"
    assert events(convs)[1]["text"].startswith("[ConversationUpdate:\r\n")


def activity(n: int, **fields: object) -> dict:
    return {"type": "message", "id": str(n), "timestamp": f"2024-03-01T10:00:0{n}Z",
            "conversation": {"id": "c1"}, "from": {"id": "u1", "name": "Ana", "role": "user"},
            "text": f"message {n}", **fields}


def dump(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "chat.transcript"
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_malformed_activities_reported_and_rest_read(tmp_path: Path) -> None:
    acts = [activity(1), "junk", activity(2, timestamp="yesterday"), activity(3, text=5),
            activity(4, timestamp=None), activity(5)]
    convs, opts = read_all(dump(tmp_path, acts), "botframework")
    assert texts(convs) == ["message 1", "message 5"]
    assert [p.position for p in opts.problems] == [
        "activity 1", "activity 2", "activity 3", "activity 4"]


@pytest.mark.parametrize("content", ["", "{}", "[]", "[1, 2]",
                                     '[{"type": "typing", "timestamp": "2024-01-01T00:00:00Z"}]'])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "chat.transcript"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadableExport, match="chat.transcript"):
        read_all(path, "botframework")


def test_several_conversations_in_one_file(tmp_path: Path) -> None:
    acts = [activity(1), activity(2, conversation={"id": "c2"}), activity(3)]
    convs, _ = read_all(dump(tmp_path, acts), "botframework")
    assert [(c["conversation_id"], len(c["messages"])) for c in convs] == [("c1", 2),
                                                                          ("c2", 1)]


# -- writing ------------------------------------------------------------------------------

def round_trip(convs: list[dict], out: Path) -> list[dict]:
    written = botframework.write(convs, out)
    assert len(written) == len(convs)
    # read back under the source they name: a reader files records under the one given
    back, opts = read_all(out, "botframework", source=convs[0]["source"])
    assert opts.problems == []
    return back


def test_round_trip_corpus_and_case(tmp_path: Path) -> None:
    originals: list[dict] = []
    for name in ("addItemWithButton.transcript", "cli.sample.transcript"):
        originals += read_all(corpus_file(f"botframework/{name}"), "botframework")[0]
    originals += read_all(case_input("17-bf-conversationupdate.transcript"),
                          "botframework")[0]
    back = round_trip(originals, tmp_path / "native")
    assert sorted(canonical(back)) == sorted(canonical(originals))


def test_round_trip_from_another_platform(tmp_path: Path) -> None:
    originals = read_all(corpus_file("whatsapp/whatsapp_chat.txt"), "whatsapp")[0]
    back = round_trip(originals, tmp_path / "native")
    assert canonical(back) == canonical(originals)
    acts = json.loads(next((tmp_path / "native").iterdir()).read_text("utf-8"))
    assert acts[0]["type"] == "event" and acts[1]["type"] == "message"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(convs=st.lists(conversation_strategy(), min_size=1, max_size=3,
                      unique_by=lambda c: c["conversation_id"]))
def test_round_trip_any_conversation(tmp_path_factory: pytest.TempPathFactory,
                                     convs: list[dict]) -> None:
    back = round_trip(convs, tmp_path_factory.mktemp("bf"))
    assert sorted(canonical(back)) == sorted(canonical(convs))


# -- property: activities without 'from' or 'recipient' (case 17, as a family) ------------

_bf_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_bf_id = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def _account_or_not(draw: st.DrawFn) -> tuple[bool, object]:
    """(present, value): absent, null, not an object, an object without an id, or an account."""
    shape = draw(st.sampled_from(["absent", "null", "empty", "no id", "not an object",
                                  "account"]))
    value: object = {"absent": None, "null": None, "empty": {},
                     "no id": {"name": draw(_bf_text), "role": "user"},
                     "not an object": draw(st.sampled_from(["u1", 7, ["u1"]])),
                     "account": None}[shape]
    if shape == "account":
        value = {"id": draw(_bf_id), "name": draw(_bf_text),
                 "role": draw(st.sampled_from(["user", "bot", "skill", None]))}
    return shape != "absent", value


@st.composite
def _activity(draw: st.DrawFn, n: int) -> dict:
    kind = draw(st.sampled_from(["message", "message", "conversationUpdate", "event",
                                 "endOfConversation"]))
    act: dict = {"type": kind, "id": f"a{n}", "timestamp": f"2024-03-01T10:00:{n:02d}Z",
                 "conversation": {"id": "c1"}, "channelId": "webchat"}
    for key in ("from", "recipient"):
        present, value = draw(_account_or_not())
        if present:
            act[key] = value
    if kind == "message" and draw(st.integers(0, 4)):
        act["text"] = draw(_bf_text)
    if kind == "conversationUpdate" and draw(st.booleans()):
        act["membersAdded"] = [v for _, v in draw(st.lists(_account_or_not(), max_size=3))]
    if kind == "event":
        act["name"] = draw(st.sampled_from(["webchat/join", "handoff.initiate"]))
    return act


def _valid_account(value: object) -> str | None:
    return value["id"] if isinstance(value, dict) and isinstance(value.get("id"), str) else None


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), count=st.integers(1, 10))
def test_activities_without_from_or_recipient_never_stop_a_read(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, count: int) -> None:
    acts = [data.draw(_activity(n)) for n in range(count)]
    convs, opts = read_all(dump(tmp_path_factory.mktemp("bf-nofrom"), acts), "botframework")
    assert opts.problems == []
    [conv] = convs
    got = {m["id"]: m for m in conv["messages"]}
    assert list(got) == [a["id"] for a in acts]  # every activity kept, in order
    for act in acts:
        m, sender = got[act["id"]], _valid_account(act.get("from"))
        assert m["text"] == act.get("text", "")
        if act["type"] == "message" and sender is not None:
            assert m["from"] == sender and not m.get("system")
        else:  # no usable 'from', or not a message: an event, its text still kept
            assert m["from"] is None and m["system"] is True
    people = {p["id"] for p in conv["participants"]}
    named = {_valid_account(a.get(k)) for a in acts for k in ("from", "recipient")}
    named |= {_valid_account(v) for a in acts for v in a.get("membersAdded", [])}
    assert people == named - {None}


@pytest.mark.parametrize("fields", [
    {"from": {"id": ""}},
    {"recipient": {"id": "", "name": "Bot"}},
    {"type": "conversationUpdate", "membersAdded": 5},
], ids=["from-empty-id", "recipient-empty-id", "membersAdded-not-a-list"])
def test_an_unusable_account_is_no_account(tmp_path: Path, fields: dict) -> None:
    acts = [activity(1, **fields), activity(2)]
    convs, opts = read_all(dump(tmp_path, acts), "botframework")
    assert opts.problems == []
    assert [m["text"] for m in convs[0]["messages"]] == ["message 1", "message 2"]


# -- property: any JSON value in any field never stops a read -----------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                     | st.floats(allow_nan=False, allow_infinity=False) | _bf_text,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_bf_text, inner, max_size=3), max_leaves=5)
_FIELDS = ["type", "id", "timestamp", "localTimestamp", "from", "recipient", "text",
           "replyToId", "attachments", "conversation", "channelId", "membersAdded",
           "channelData", "name", "value", "from.id", "from.role", "from.name",
           "recipient.id", "conversation.id", "attachments.0", "attachments.0.content",
           "channelData.chatvault"]


def _put(act: dict, where: str, value: object) -> None:
    *path, last = where.split(".")
    node: object = act
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_FIELDS), value=_json, victim=st.integers(0, 2))
def test_any_json_in_any_field_never_stops_a_read(tmp_path_factory: pytest.TempPathFactory,
                                                  where: str, value: object,
                                                  victim: int) -> None:
    acts = [activity(n, attachments=[{"contentType": "image/png", "name": "a.png"}],
                     recipient={"id": "bot", "role": "bot"}, channelData={"tenant": "t"})
            for n in range(1, 4)]
    _put(acts[victim], where, value)
    path = dump(tmp_path_factory.mktemp("bf-any"), acts)
    convs, opts = read_all(path, "botframework")
    kept = [m["text"] for c in convs for m in c["messages"]]
    for n, act in enumerate(acts):
        if n != victim:  # every other activity is read whole
            assert act["text"] in kept, (opts.problems, kept)
    assert all(not p.refused for p in opts.problems), opts.problems
    assert all(p.path == str(path) and p.position == f"activity {victim}"
               for p in opts.problems)


@pytest.mark.parametrize("field", ["from", "recipient"])
def test_an_account_id_too_long_for_a_record_is_shortened_and_said(tmp_path: Path,
                                                                   field: str) -> None:
    long = "u" * 1500
    acts = [activity(1, **{field: {"id": long, "name": "Ana"}}), activity(2),
            activity(3, **{field: {"id": long, "name": "Ana"}})]
    convs, opts = read_all(dump(tmp_path, acts), "botframework")
    [conv] = convs
    assert [m["text"] for m in conv["messages"]] == ["message 1", "message 2", "message 3"]
    [person] = [p for p in conv["participants"] if p["platform_ids"]["botframework"] == long]
    assert len(person["id"]) < 200 and person["id"].startswith("u" * 64)
    if field == "from":
        assert [m["from"] for m in conv["messages"]] == [person["id"], "u1", person["id"]]
    [problem] = opts.problems  # said once, for the first mention
    assert problem.position == "activity 0" and "1,500 characters" in str(problem)


def test_a_repeated_activity_id_keeps_both(tmp_path: Path) -> None:
    acts = [activity(1), activity(2, id="1"), activity(3)]
    convs, opts = read_all(dump(tmp_path, acts), "botframework")
    assert opts.problems == []
    assert [(m["id"], m["text"]) for m in convs[0]["messages"]] == [
        ("1", "message 1"), ("1#2", "message 2"), ("3", "message 3")]
