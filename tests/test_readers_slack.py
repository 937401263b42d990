"""Slack reader and writer: the corpus zip, written exports, round trips."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_readers import (canonical, case_input, conversation_strategy, corpus_file,
                              events, found, messages, names, read_all, texts)
from conftest import Pair, run_cli
from vault import ingest, sources
from vault.errors import UnreadableExport
from vault.sources import slack
from vault_kit import Chain, outbox, stick


def test_corpus_export() -> None:
    path = corpus_file("slack/slack_export.zip")
    convs, opts = read_all(path, "slack")
    assert opts.problems == []
    assert [c["conversation_id"] for c in convs] == [
        "C0535BV3C6P:2023-04-13", "C05019B47SB:2023-04-13", "C050FR57M8S:2023-04-13"]
    assert [c["channel"] for c in convs] == ["example-channel", "general", "random"]
    assert len(messages(convs)) == 4
    assert len(events(convs)) == 1  # channel_join
    assert [len(c["participants"]) for c in convs] == [1, 1, 1]
    # U0500003428 is not in users.json: the name comes from user_profile
    assert names(convs) == ["Example User"]
    assert convs[0]["participants"][0]["id"] == "U0500003428"
    with zipfile.ZipFile(path) as zf:
        raw = json.loads(zf.read("general/2023-04-13.json"))
    assert texts(convs)[1:3] == [m["text"] for m in raw]
    assert messages(convs)[1]["at"] == "2023-04-13T19:15:17.397479Z"
    assert found(convs).emails == []


USERS = [{"id": "U1", "name": "ana", "real_name": "Ana Example",
          "profile": {"real_name": "Ana Example", "email": "Ana@Example.org",
                      "phone": "07700 900123", "image_72": "https://x/y.png"}},
         {"id": "U2", "name": "helpbot", "is_bot": True, "profile": {"real_name": "Help Bot"}}]
CHANNELS = [{"id": "C1", "name": "support", "members": ["U1", "U2"]}]
DAY1 = [
    {"type": "message", "user": "U1", "text": "my order?", "ts": "1709287200.000100",
     "thread_ts": "1709287200.000100", "reply_count": 1},
    {"type": "message", "user": "U2", "text": "shipped", "ts": "1709287260.000200",
     "thread_ts": "1709287200.000100", "bot_id": "B1",
     "edited": {"user": "U2", "ts": "1709287300.000000"},
     "files": [{"id": "F1", "name": "label.pdf", "mimetype": "application/pdf",
                "size": 1234, "url_private": "https://files/label.pdf"}]},
    {"type": "message", "subtype": "channel_join", "user": "U9", "text": "<@U9> joined",
     "ts": "1709287300.000300"},
    {"type": "message", "text": "no ts here"},
]


def make_export(tmp_path: Path, *, prefix: str = "", day2: object = None) -> Path:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(prefix + "users.json", json.dumps(USERS))
        zf.writestr(prefix + "channels.json", json.dumps(CHANNELS))
        zf.writestr(prefix + "support/2024-03-01.json", json.dumps(DAY1))
        zf.writestr(prefix + "support/2024-03-02.json",
                    json.dumps(day2) if day2 is not None else "[oops")
    return path


def test_written_export_threads_edits_files_and_problems(tmp_path: Path) -> None:
    convs, opts = read_all(make_export(tmp_path, prefix="Workspace export/"), "slack")
    assert len(convs) == 1
    conv = convs[0]
    assert conv["conversation_id"] == "C1:2024-03-01" and conv["channel"] == "support"
    parent, reply = messages(convs)
    assert "reply_to" not in parent and reply["reply_to"] == parent["id"]
    assert reply["bot"] is True and reply["edited_at"] == "2024-03-01T10:01:40Z"
    assert reply["attachments"][0] == {"name": "label.pdf", "type": "application/pdf",
                                       "size": 1234, "url": "https://files/label.pdf",
                                       "omitted": True, "extra": {"id": "F1"}}
    assert events(convs)[0]["from"] == "U9"
    people = {p["id"]: p for p in conv["participants"]}
    assert people["U1"]["email"] == "Ana@Example.org" and people["U2"]["role"] == "bot"
    assert "image_72" not in json.dumps(people["U1"])
    assert found(convs, "GB").emails == ["ana@example.org"]
    assert found(convs, "GB").phones == ["+447700900123"]
    assert [(p.position, p.expected) for p in opts.problems] == [
        ("support/2024-03-01.json: [3]", "a message with a string 'ts' and 'text'"),
        ("support/2024-03-02.json", opts.problems[1].expected)]
    assert "not valid JSON" in opts.problems[1].expected


def test_unpacked_folder_is_one_export(tmp_path: Path) -> None:
    with zipfile.ZipFile(make_export(tmp_path, day2=[])) as zf:
        zf.extractall(tmp_path / "unpacked")
    folder = tmp_path / "unpacked"
    assert slack.wants(folder)
    assert sources.export_files(folder, "slack") == [folder]
    convs, _ = read_all(folder, "slack")
    assert [c["conversation_id"] for c in convs] == ["C1:2024-03-01"]


@pytest.mark.parametrize("members", [{}, {"users.json": "[]", "notes.txt": "hi"},
                                     {"users.json": "[]", "general/2024-01-01.json": "{}"}])
def test_nothing_readable_is_refused(tmp_path: Path, members: dict) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(UnreadableExport, match="export.zip"):
        read_all(path, "slack")


def test_garbage_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(UnreadableExport, match="not a zip archive"):
        read_all(path, "slack")


# -- members of DMs and group DMs --------------------------------------------------------

MEMBER_USERS = USERS + [{"id": "U3", "name": "ben", "real_name": "Ben Sample",
                         "profile": {"real_name": "Ben Sample", "email": "ben@example.org"}}]


def say(uid: str, text: str, ts: str = "1709287200.000100") -> list[dict]:
    return [{"type": "message", "user": uid, "text": text, "ts": ts}]


def members_export(tmp_path: Path) -> Path:
    path = tmp_path / "members.zip"
    lists = {
        "channels.json": [{"id": "C1", "name": "support", "members": ["U1", "U2", "U3"]}],
        "groups.json": [{"id": "G1", "name": "private-team", "members": ["U1", "U3"]},
                        {"id": "G2", "name": "mpdm-ana--ben--helpbot-1", "is_mpim": True,
                         "members": ["U1", "U3", "U2"]}],
        "dms.json": [{"id": "D1", "members": ["U1", "U2"]}],
        "mpims.json": [{"id": "G3", "name": "mpdm-ana--ben--ux-1",
                        "members": ["U1", "U3", "UX", 7, "U3"]}],
    }
    days = {"support": say("U1", "hello all"), "private-team": say("U1", "team note"),
            "mpdm-ana--ben--helpbot-1": say("U2", "bot to three"),
            "D1": say("U2", "your contract ends soon"),
            "mpdm-ana--ben--ux-1": say("U3", "parcel 4471 is at the depot")}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("users.json", json.dumps(MEMBER_USERS))
        for name, data in lists.items():
            zf.writestr(name, json.dumps(data))
        for folder, day in days.items():
            zf.writestr(f"{folder}/2024-03-01.json", json.dumps(day))
    return path


def test_dm_members_are_participants_even_silent(tmp_path: Path) -> None:
    convs, opts = read_all(members_export(tmp_path), "slack")
    assert opts.problems == []
    by_channel = {c["extra"]["channel_id"]: c for c in convs}
    roles = {cid: [(p["id"], p["role"]) for p in c["participants"]]
             for cid, c in by_channel.items()}
    assert roles == {
        # channels, public or private: the people who wrote, members stay in extra
        "C1": [("U1", "customer")],
        "G1": [("U1", "customer")],
        # group DMs: the people who wrote (case 13 fixes that)
        "G2": [("U2", "bot")],
        "G3": [("U3", "customer")],
        # a DM: the writer first, then the other member, its role as a writer's
        "D1": [("U2", "bot"), ("U1", "customer")],
    }
    assert by_channel["C1"]["extra"]["channel_info"]["members"] == ["U1", "U2", "U3"]
    [ana] = [p for p in by_channel["D1"]["participants"] if p["id"] == "U1"]
    assert ana["email"] == "Ana@Example.org" and ana["name"] == "Ana Example"
    assert ana["phone"] == "07700 900123" and ana["platform_ids"] == {"slack": "U1"}
    assert ana["extra"]["member_only"] is True
    [writer] = [p for p in by_channel["D1"]["participants"] if p["id"] == "U2"]
    assert "member_only" not in writer.get("extra", {})
    assert found([by_channel["D1"]], "GB").emails == ["ana@example.org"]
    assert by_channel["G3"]["extra"]["channel_info"]["members"] == ["U1", "U3", "UX", 7, "U3"]
    assert found([by_channel["C1"]]).emails == ["ana@example.org"]


def test_silent_dm_member_is_found_by_subject_find(pair: Pair, tmp_path: Path) -> None:
    """Case 12: Ana only received Slackbot's DM; her e-mail and id must still find it."""
    source = "case-slack"
    convs = list(sources.read(case_input("12-slack-uslackbot.zip"), "slack",
                              sources.ReadOptions(source=source, phone_region="GB")))
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root), context={"phone_region": "GB"}).seal(convs, source=source)
    [out] = ingest.ingest_media(pair.vault_path, media_root)
    assert out.status == "ingested", out.reason
    for how in (["--email", "ANA.EXAMPLE@example.org"], ["--id", "slack:U01ANA0001"]):
        r = run_cli("subject", "find", *how, "--json", "--home", pair.vault_path)
        assert r.code == 0, r.err
        found_ids = {x["conversation_id"]: x for x in r.json()["results"]}  # type: ignore
        assert sorted(found_ids) == ["C01GEN0001:2024-03-01", "D01DM00001:2024-03-01"]
        assert found_ids["D01DM00001:2024-03-01"]["match"] == "exact"
        assert found_ids["D01DM00001:2024-03-01"]["subject_is_customer"]


# -- writing -----------------------------------------------------------------------------

def round_trip(convs: list[dict], tmp_path: Path) -> list[dict]:
    out = tmp_path / "native"
    written = slack.write(convs, out)
    assert all(p.is_file() for p in written)
    # read back under the source they name: a reader files records under the one given
    back, opts = read_all(out, "slack", source=convs[0]["source"])
    assert opts.problems == []
    return back


def test_round_trip_corpus_and_cases(tmp_path: Path) -> None:
    originals, _ = read_all(corpus_file("slack/slack_export.zip"), "slack")
    for case in ("12-slack-uslackbot.zip", "13-slack-external-user.zip",
                 "15-slack-bot-no-user.zip"):
        originals += read_all(case_input(case), "slack")[0]
    back = round_trip(originals, tmp_path)
    assert sorted(canonical(back)) == sorted(canonical(originals))


def test_written_files_are_native_slack(tmp_path: Path) -> None:
    convs, _ = read_all(make_export(tmp_path, day2=[]), "slack")
    slack.write(convs, tmp_path / "native")
    day = json.loads((tmp_path / "native" / "support" / "2024-03-01.json").read_text())
    assert day[1]["user"] == "U2" and day[1]["bot_id"] == "B1"
    assert day[1]["thread_ts"] == "1709287200.000100" and day[1]["ts"] == "1709287260.000200"
    users = json.loads((tmp_path / "native" / "users.json").read_text())
    assert {u["id"] for u in users} == {"U1", "U2", "U9"}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(convs=st.lists(conversation_strategy(), min_size=1, max_size=3,
                      unique_by=lambda c: c["conversation_id"]))
def test_round_trip_any_conversation(tmp_path_factory: pytest.TempPathFactory,
                                     convs: list[dict]) -> None:
    back = round_trip(convs, tmp_path_factory.mktemp("slack"))
    assert sorted(canonical(back)) == sorted(canonical(convs))


# -- property: senders missing from users.json never stop a read ---------------------------
#
# The family behind cases 12, 13 and 15: an id that users.json does not list
# (Slackbot, another workspace's user, a deleted user, a bot) may sit in 'user',
# 'parent_user_id', reactions, thread replies and member lists. None of them
# may crash the reader or drop a message; a writer so named becomes a
# participant under that very id.

_KNOWN = {"U1"}
_uid = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24).filter(
    lambda s: s not in _KNOWN)
_slack_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def _day(draw: st.DrawFn, base: int) -> list[dict]:
    """A day of messages from known and unknown writers, with threads and reactions."""
    ids = draw(st.lists(_uid, min_size=1, max_size=5, unique=True))
    anyone = st.sampled_from([*ids, "U1"])
    out: list[dict] = []
    for n in range(draw(st.integers(1, 6))):
        raw: dict = {"type": "message", "user": draw(anyone), "text": draw(_slack_text),
                     "ts": f"{base + n}.{n:06d}"}
        if out and draw(st.booleans()):  # a thread reply to the first message
            raw["thread_ts"] = out[0]["ts"]
            raw["parent_user_id"] = draw(anyone | _uid)
            out[0].setdefault("replies", []).append({"user": raw["user"], "ts": raw["ts"]})
            out[0]["reply_users"] = sorted({r["user"] for r in out[0]["replies"]})
            out[0]["thread_ts"] = out[0]["ts"]
        if draw(st.booleans()):
            users = draw(st.lists(anyone | _uid, min_size=1, max_size=3))
            raw["reactions"] = [{"name": "+1", "users": users, "count": len(users)}]
        if draw(st.booleans()):
            raw["edited"] = {"user": draw(anyone | _uid), "ts": f"{base + n}.999999"}
        out.append(raw)
    return out


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(channel_day=_day(1709287200), dm_day=_day(1709290800),
       channel_members=st.lists(_uid | st.just("U1"), max_size=4),
       dm_members=st.lists(_uid, min_size=1, max_size=3, unique=True))
def test_any_unknown_sender_is_kept_as_a_participant(
        tmp_path_factory: pytest.TempPathFactory, channel_day: list[dict],
        dm_day: list[dict], channel_members: list[str], dm_members: list[str]) -> None:
    path = tmp_path_factory.mktemp("slack-unknown") / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("users.json", json.dumps(USERS[:1]))  # only U1 is known
        zf.writestr("channels.json", json.dumps(
            [{"id": "C1", "name": "support", "members": channel_members}]))
        zf.writestr("dms.json", json.dumps([{"id": "D1", "members": dm_members}]))
        zf.writestr("support/2024-03-01.json", json.dumps(channel_day))
        zf.writestr("D1/2024-03-01.json", json.dumps(dm_day))

    convs, opts = read_all(path, "slack")

    assert opts.problems == []
    by_id = {c["extra"]["channel_id"]: c for c in convs}
    assert sorted(by_id) == ["C1", "D1"]
    for cid, day in (("C1", channel_day), ("D1", dm_day)):
        conv = by_id[cid]
        # every message kept, in order, its writer and text exactly as exported
        assert [(m["id"], m["from"], m["text"]) for m in conv["messages"]] == [
            (raw["ts"], raw["user"], raw["text"]) for raw in day]
        for m, raw in zip(conv["messages"], day):
            if "reactions" in raw:
                assert m["extra"]["reactions"] == raw["reactions"]
            if "parent_user_id" in raw:
                assert m["reply_to"] == day[0]["ts"]
                assert m["extra"]["parent_user_id"] == raw["parent_user_id"]
        people = {p["id"]: p for p in conv["participants"]}
        writers = list(dict.fromkeys(raw["user"] for raw in day))
        assert list(people)[:len(writers)] == writers
        for uid in writers:
            assert people[uid]["platform_ids"] == {"slack": uid}
            if uid in _KNOWN:
                assert people[uid]["name"] == "Ana Example"
            else:
                assert people[uid]["extra"]["not_in_users_json"] is True
        if cid == "D1":  # a DM's silent members are participants too, unknown or not
            assert set(people) == set(writers) | set(dm_members)
        else:  # a channel's members stay as listed, in extra
            assert set(people) == set(writers)
            assert conv["extra"]["channel_info"]["members"] == channel_members


# -- property: any JSON value in any field never stops a read -----------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                     | st.floats(allow_nan=False, allow_infinity=False) | _slack_text,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_slack_text, inner, max_size=3), max_leaves=5)
_MESSAGE_FIELDS = ["type", "subtype", "user", "text", "ts", "edited", "edited.ts",
                   "edited.user", "files", "files.0", "files.0.size", "files.0.mode",
                   "files.0.name", "attachments", "attachments.0", "attachments.0.fallback",
                   "thread_ts", "bot_id", "user_profile", "user_profile.real_name",
                   "bot_profile", "reactions", "user_team", "chatvault", "chatvault.from"]
_LIST_FIELDS = ["users.0", "users.0.id", "users.0.profile", "users.0.profile.real_name",
                "users.0.profile.email", "users.0.profile.phone", "users.0.real_name",
                "users.0.is_bot", "channels.0", "channels.0.id", "channels.0.name",
                "channels.0.members", "dms.0.members", "dms.0.members.0", "dms.0.is_im",
                "users", "channels", "dms"]


def _put(doc: object, where: str, value: object) -> None:
    *path, last = where.split(".")
    node = doc
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


def _sample_day(ts: int) -> list[dict]:
    return [{"type": "message", "user": "U1", "text": f"message {n}", "ts": f"{ts + n}.000100",
             "edited": {"user": "U1", "ts": f"{ts + n}.000200"}, "thread_ts": f"{ts}.000100",
             "files": [{"id": "F1", "name": "a.pdf", "size": 3, "mode": "hosted"}],
             "attachments": [{"fallback": "card", "title": "t"}],
             "user_profile": {"real_name": "Ana"}, "bot_profile": {"name": "b"},
             "reactions": [{"name": "+1", "users": ["U1"]}], "user_team": "T1",
             "chatvault": {"note": 1}, "bot_id": "B1", "subtype": "thread_broadcast"}
            for n in range(3)]


def _sample_export(path: Path, lists: dict, day: list[dict], dm_day: list[dict]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in lists.items():
            zf.writestr(f"{name}.json", json.dumps(value))
        zf.writestr("support/2024-03-01.json", json.dumps(day))
        zf.writestr("D1/2024-03-01.json", json.dumps(dm_day))
    return path


def _lists() -> dict:
    return {"users": [{"id": "U1", "name": "ana", "real_name": "Ana",
                       "profile": {"real_name": "Ana", "email": "a@example.org",
                                   "phone": "+44 7700 900123"}, "is_bot": False}],
            "channels": [{"id": "C1", "name": "support", "members": ["U1"]}],
            "dms": [{"id": "D1", "members": ["U1", "U7"], "is_im": True}]}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_MESSAGE_FIELDS), value=_json, victim=st.integers(0, 2))
def test_any_json_in_any_message_field_never_stops_a_read(
        tmp_path_factory: pytest.TempPathFactory, where: str, value: object,
        victim: int) -> None:
    day = _sample_day(1709287200)
    _put(day[victim], where, value)
    path = _sample_export(tmp_path_factory.mktemp("slack-any") / "export.zip", _lists(), day,
                          _sample_day(1709290800))
    convs, opts = read_all(path, "slack")
    kept = [m["text"] for c in convs for m in c["messages"]]
    assert kept.count("message 0") + kept.count("message 1") + kept.count("message 2") >= 5
    for n in range(3):
        if n != victim:  # every other message is read whole
            assert kept.count(f"message {n}") == 2, (opts.problems, kept)
    assert all(not p.refused for p in opts.problems), opts.problems
    assert all(p.path == str(path) and p.position == f"support/2024-03-01.json: [{victim}]"
               for p in opts.problems), opts.problems


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_LIST_FIELDS), value=_json)
def test_any_json_in_users_or_channel_lists_never_stops_a_read(
        tmp_path_factory: pytest.TempPathFactory, where: str, value: object) -> None:
    lists = _lists()
    _put(lists, where, value)
    path = _sample_export(tmp_path_factory.mktemp("slack-lists") / "export.zip", lists,
                          _sample_day(1709287200), _sample_day(1709290800))
    convs, opts = read_all(path, "slack")
    assert len(convs) == 2 and all(len(c["messages"]) == 3 for c in convs), opts.problems
    assert all(not p.refused for p in opts.problems), opts.problems


def test_a_user_id_too_long_for_a_record_is_shortened_the_same_everywhere(
        tmp_path: Path) -> None:
    long = "U" + "9" * 1500
    day = _sample_day(1709287200)
    day[0]["user"] = day[2]["user"] = long
    lists = _lists()
    lists["dms"][0]["members"] = ["U1", long]
    path = _sample_export(tmp_path / "export.zip", lists, day, _sample_day(1709290800))
    convs, opts = read_all(path, "slack")
    by_id = {c["extra"]["channel_id"]: c for c in convs}
    assert [m["text"] for m in by_id["C1"]["messages"]] == [f"message {n}" for n in range(3)]
    short = by_id["C1"]["messages"][0]["from"]
    assert len(short) < 200 and short.startswith(long[:64])
    assert by_id["C1"]["messages"][2]["from"] == short
    for conv in convs:  # the silent DM member is the same person, under the same id
        [person] = [p for p in conv["participants"] if p["platform_ids"]["slack"] == long]
        assert person["id"] == short
    assert [(p.position, p.refused) for p in opts.problems] == [
        ("D1/2024-03-01.json: members", False), ("support/2024-03-01.json: [0]", False)]
    assert "a user id of 1,501 characters, more than the 1,024 an id holds" in str(
        opts.problems[1])


def test_files_that_are_not_a_list_are_kept_in_extra(tmp_path: Path) -> None:
    day = _sample_day(1709287200)
    day[1]["files"], day[1]["attachments"], day[1]["edited"] = 5, "x", ["y"]
    path = _sample_export(tmp_path / "export.zip", _lists(), day, _sample_day(1709290800))
    convs, opts = read_all(path, "slack")
    assert opts.problems == []
    msg = next(c for c in convs if c["extra"]["channel_id"] == "C1")["messages"][1]
    assert "attachments" not in msg and "edited_at" not in msg
    assert (msg["extra"]["files"], msg["extra"]["attachments"], msg["extra"]["edited"]) == (
        5, "x", ["y"])


def test_a_ts_twice_in_a_day_keeps_both(tmp_path: Path) -> None:
    day = _sample_day(1709287200)
    day[1]["ts"] = day[0]["ts"]
    path = _sample_export(tmp_path / "export.zip", _lists(), day, _sample_day(1709290800))
    convs, opts = read_all(path, "slack")
    assert opts.problems == []
    conv = next(c for c in convs if c["extra"]["channel_id"] == "C1")
    assert [m["id"] for m in conv["messages"]] == [
        "1709287200.000100", "1709287200.000100#2", "1709287202.000100"]


# -- members that look like day files but are not read: reported by name, never dropped -------

def _odd_zip(tmp_path: Path) -> Path:
    path = tmp_path / "export.zip"
    day = json.dumps(DAY1[:1])
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("users.json", json.dumps(USERS))
        zf.writestr("channels.json", json.dumps(CHANNELS))
        zf.writestr("integration_logs.json", "[]")
        zf.writestr("support/2024-03-01.json", day)
        zf.writestr("x/y/2024-03-01.json", day)  # a channel named "x/y"
        zf.writestr("../../etc/2024-03-01.json", day)
        zf.writestr("support\\2024-03-02.json", day)  # written on Windows
        zf.writestr("support/2024-03-03 (1).json", day)
        # not day files: passed over
        zf.writestr("support/canvas_in_the_conversation.json", "{}")
        zf.writestr("support/attachments/F1-data.json", "{}")
        zf.writestr("__uploads/F1/data.json", "{}")
        zf.writestr("__MACOSX/support/._2024-03-01.json", "resource fork")
        zf.writestr("support/notes.txt", "not json")
    return path


ODD = {"x/y/2024-03-01.json", "../../etc/2024-03-01.json", "support\\2024-03-02.json",
       "support/2024-03-03 (1).json"}


def test_zip_members_not_named_as_day_files_are_refused_by_name(tmp_path: Path) -> None:
    convs, opts = read_all(_odd_zip(tmp_path), "slack")
    assert [c["conversation_id"] for c in convs] == ["C1:2024-03-01"]
    said = {p.position: p for p in opts.problems}
    assert set(said) == {f"skipped {name}" for name in ODD}
    assert all(p.refused for p in opts.problems)
    assert "channel/YYYY-MM-DD.json" in said["skipped x/y/2024-03-01.json"].expected
    assert not (tmp_path.parent / "etc").exists()


def test_convert_of_a_zip_with_an_unreadable_member_exits_3(tmp_path: Path) -> None:
    result = run_cli("sources", "convert", _odd_zip(tmp_path), "-f", "slack",
                     "-o", tmp_path / "out.jsonl")
    assert result.code == 3, result.err
    assert "wrote 1 conversations" in result.err
    for name in ODD:
        assert f"skipped {name}" in result.err


def test_members_outside_the_export_folder_and_twice_in_the_zip_are_refused(
        tmp_path: Path) -> None:
    import warnings

    path = tmp_path / "export.zip"
    day = json.dumps(DAY1[:1])
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        zf.writestr("a/users.json", json.dumps(USERS))
        zf.writestr("a/channels.json", json.dumps(CHANNELS))
        zf.writestr("a/support/2024-03-01.json", day)
        zf.writestr("a/support/2024-03-02.json", day)
        zf.writestr("a/support/2024-03-02.json", json.dumps(DAY1[1:2]))
        zf.writestr("b/users.json", json.dumps(USERS))
        zf.writestr("b/support/2024-03-04.json", day)
    convs, opts = read_all(path, "slack")
    assert [c["conversation_id"] for c in convs] == ["C1:2024-03-01", "C1:2024-03-02"]
    said = {p.position: p.expected for p in opts.problems if p.refused}
    assert set(said) == {"skipped b/support/2024-03-04.json", "support/2024-03-02.json"}
    assert "2 members of this name" in said["support/2024-03-02.json"]


def test_unpacked_folder_refuses_links_pipes_and_odd_day_files(tmp_path: Path) -> None:
    import os

    with zipfile.ZipFile(make_export(tmp_path, day2=[])) as zf:
        zf.extractall(tmp_path / "unpacked")
    folder = tmp_path / "unpacked"
    (folder / "x" / "y").mkdir(parents=True)
    (folder / "x" / "y" / "2024-03-05.json").write_text(json.dumps(DAY1[:1]))
    os.mkfifo(folder / "support" / "2024-03-03.json")
    (folder / "support" / "2024-03-04.json").symlink_to(folder / "support" / "2024-03-01.json")
    (folder / "support" / "._2024-03-01.json").write_text("macOS twin")
    (folder / "support" / "canvas_in_the_conversation.json").write_text("{}")
    (folder / "linked").symlink_to(folder / "support")  # a channel's folder, maybe

    convs, opts = read_all(folder, "slack")
    assert [c["conversation_id"] for c in convs] == ["C1:2024-03-01"]
    said = {p.position: p.expected for p in opts.problems if p.refused}
    assert set(said) == {"skipped x/y/2024-03-05.json", "skipped support/2024-03-03.json",
                         "skipped support/2024-03-04.json", "skipped linked"}
    assert "a named pipe (FIFO)" in said["skipped support/2024-03-03.json"]
    assert "a symbolic link" in said["skipped support/2024-03-04.json"]


def test_a_pipe_named_like_a_zip_is_refused_never_waited_on(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "export.zip"
    os.mkfifo(fifo)
    got: list[BaseException] = []

    def read() -> None:
        try:
            list(slack.read(fifo, sources.ReadOptions()))
        except UnreadableExport as exc:
            got.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the Slack reader waited on a FIFO")
    [caught] = got
    assert "a named pipe (FIFO)" in caught.detail
