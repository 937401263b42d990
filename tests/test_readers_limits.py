"""A conversation too large for one record is split per month or refused, never cut short.

The limits are made small here (``records.MAX_ITEMS`` = 5 messages) so that
a generated export crosses them in a few lines; the readers must read the
limits when they read, not when they were imported.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import run_cli
from conftest_readers import read_all
from vault import records

LIMIT = 5
# twelve messages: four in each of January, February and March 2024 (UTC)
MONTHS = ["2024-01", "2024-02", "2024-03"]
TIMES = [1704103200 + m * 31 * 86400 + i * 3600 for m in range(3) for i in range(4)]


@pytest.fixture(autouse=True)
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_ITEMS", LIMIT)


def ids(convs: list[dict[str, Any]]) -> list[str]:
    return [c["conversation_id"] for c in convs]


def all_messages(convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for c in convs for m in c["messages"]]


# -- the chat formats split per calendar month ---------------------------------------------

def telegram(tmp_path: Path, times: list[int] = TIMES) -> Path:
    msgs = [{"id": n, "type": "message", "date_unixtime": str(t),
             "from": "Ana" if n % 2 else "Ben", "from_id": "user42" if n % 2 else "user7",
             "text": f"message {n}"} for n, t in enumerate(times)]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "Ana", "type": "personal_chat", "id": 42,
                                "messages": msgs}), encoding="utf-8")
    return path


def whatsapp(tmp_path: Path, times: list[int] = TIMES) -> Path:
    from datetime import datetime, timezone

    lines = []
    for n, t in enumerate(times):
        moment = datetime.fromtimestamp(t, timezone.utc)
        who = "Ana Example" if n % 2 else "Ben Sample"
        lines.append(f"{moment:%d/%m/%Y}, {moment:%H:%M} - {who}: message {n}")
    path = tmp_path / "WhatsApp Chat with Ana Example.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def messenger(tmp_path: Path, times: list[int] = TIMES) -> Path:
    msgs = [{"sender_name": "Ana" if n % 2 else "Ben", "timestamp_ms": t * 1000,
             "content": f"message {n}"} for n, t in enumerate(times)]
    folder = tmp_path / "inbox" / "ana_123"
    folder.mkdir(parents=True)
    path = folder / "message_1.json"
    path.write_text(json.dumps({"participants": [{"name": "Ana"}, {"name": "Ben"},
                                                 {"name": "Cleo"}],
                                "messages": msgs[::-1], "title": "Ana",
                                "thread_path": "inbox/ana_123"}), encoding="utf-8")
    return path


SPLITTING: dict[str, tuple[Callable[..., Path], str]] = {
    "telegram": (telegram, "42"),
    "whatsapp": (whatsapp, ""),
    "messenger": (messenger, "inbox/ana_123"),
}


@pytest.mark.parametrize("fmt", sorted(SPLITTING))
def test_long_chat_is_split_per_month_with_every_message(tmp_path: Path, fmt: str) -> None:
    write, whole = SPLITTING[fmt]
    convs, opts = read_all(write(tmp_path), fmt)

    assert opts.problems == []
    base = whole or convs[0]["extra"]["part"]["of"]
    assert ids(convs) == [f"{base}#{month}" for month in MONTHS]
    texts = [m["text"] for m in all_messages(convs)]
    assert sorted(texts) == sorted(f"message {n}" for n in range(12))
    for conv, month in zip(convs, MONTHS):
        assert conv["extra"]["part"] == {"of": base, "month": month}
        assert len(conv["messages"]) == 4
        assert all(m["at"].startswith(month) for m in conv["messages"])
        assert conv["started_at"] == conv["messages"][0]["at"]
        assert conv["platform"] == fmt
    # every part names the people who wrote in it, and no one else who wrote elsewhere
    for conv in convs:
        writers = {m["from"] for m in conv["messages"]}
        listed = {p["id"] for p in conv["participants"]}
        assert writers <= listed


def test_messenger_members_who_never_wrote_are_in_every_part(tmp_path: Path) -> None:
    convs, _ = read_all(messenger(tmp_path), "messenger")
    assert all("Cleo" in {p["id"] for p in c["participants"]} for c in convs)


@pytest.mark.parametrize("fmt", sorted(SPLITTING))
def test_parts_of_past_months_stay_the_same_as_the_chat_grows(tmp_path: Path,
                                                              fmt: str) -> None:
    write, _ = SPLITTING[fmt]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before, _ = read_all(write(tmp_path / "a"), fmt)
    # the chat goes on: one more message in March, one in April
    later = TIMES + [TIMES[-1] + 60, TIMES[-1] + 31 * 86400]
    after, _ = read_all(write(tmp_path / "b", later), fmt)

    old = {c["conversation_id"]: c for c in before}
    new = {c["conversation_id"]: c for c in after}
    assert list(new) == list(old) + [list(new)[-1]] and list(new)[-1].endswith("#2024-04")
    for cid in list(old)[:2]:  # January and February: unchanged, byte for byte
        assert records.canonical_record(new[cid])[0] == records.canonical_record(old[cid])[0]
    assert len(new[list(old)[2]]["messages"]) == 5


def test_a_chat_that_fits_stays_one_conversation(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_ITEMS", 12)
    convs, opts = read_all(telegram(tmp_path), "telegram")
    assert ids(convs) == ["42"] and len(convs[0]["messages"]) == 12
    assert "part" not in convs[0].get("extra", {}) and opts.problems == []


def test_one_month_over_the_limit_is_refused_and_named(tmp_path: Path) -> None:
    times = TIMES[:4] + [1709287200 + i * 60 for i in range(7)]  # seven in March
    convs, opts = read_all(telegram(tmp_path, times), "telegram")

    assert ids(convs) == ["42#2024-01"]
    [problem] = opts.problems
    assert problem.refused and problem.path == str(tmp_path / "result.json")
    assert "42#2024-03" in problem.position
    assert "7 messages" in problem.expected and "5" in problem.expected


def test_split_by_size_as_well(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_ITEMS", 1000)
    whole, _ = read_all(telegram(tmp_path), "telegram")
    size = len(records.canonical_record(whole[0])[0])
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", size - 1)

    convs, opts = read_all(telegram(tmp_path), "telegram")
    assert ids(convs) == [f"42#{m}" for m in MONTHS] and opts.problems == []
    assert all(len(records.canonical_record(c)[0]) < size for c in convs)


# -- the other formats refuse ----------------------------------------------------------------

def _slack(tmp_path: Path, n: int) -> Path:
    root = tmp_path / "slack"
    (root / "general").mkdir(parents=True)
    (root / "users.json").write_text(json.dumps([{"id": "U1", "name": "ana"}]))
    (root / "channels.json").write_text(json.dumps([{"id": "C1", "name": "general"}]))
    msgs = [{"type": "message", "user": "U1", "text": f"m{i}", "ts": f"1709287200.{i:06d}"}
            for i in range(n)]
    (root / "general" / "2024-03-01.json").write_text(json.dumps(msgs))
    (root / "general" / "2024-03-02.json").write_text(json.dumps(msgs[:2]))
    return root


def _botframework(tmp_path: Path, n: int) -> Path:
    acts = [{"type": "message", "id": f"a{i}", "timestamp": f"2024-03-01T10:00:{i:02d}Z",
             "from": {"id": "u1", "name": "Ana"}, "conversation": {"id": "big"},
             "text": f"m{i}"} for i in range(n)]
    acts += [{"type": "message", "id": "s1", "timestamp": "2024-03-01T11:00:00Z",
              "from": {"id": "u1"}, "conversation": {"id": "small"}, "text": "hi"}]
    path = tmp_path / "t.transcript"
    path.write_text(json.dumps(acts))
    return path


def _rasa(tmp_path: Path, n: int) -> Path:
    big = {"sender_id": "big", "events": [{"event": "user", "timestamp": 1709287200 + i,
                                            "text": f"m{i}"} for i in range(n)]}
    small = {"sender_id": "small", "events": [{"event": "user", "timestamp": 1709287200,
                                                "text": "hi"}]}
    path = tmp_path / "trackers.json"
    path.write_text(json.dumps([big, small]))
    return path


def _intercom(tmp_path: Path, n: int) -> Path:
    def conv(cid: str, k: int) -> dict[str, Any]:
        parts = [{"id": f"{cid}-{i}", "part_type": "comment", "body": f"<p>m{i}</p>",
                  "created_at": 1709287200 + i, "author": {"type": "user", "id": "u1"}}
                 for i in range(k)]
        return {"type": "conversation", "id": cid, "created_at": 1709287200,
                "conversation_parts": {"conversation_parts": parts}}

    path = tmp_path / "intercom.json"
    path.write_text(json.dumps({"conversations": [conv("big", n), conv("small", 1)]}))
    return path


def _freshdesk(tmp_path: Path, n: int) -> Path:
    def ticket(tid: int, k: int) -> dict[str, Any]:
        return {"ticket": {"id": tid, "subject": "s", "requester_id": 1,
                           "created_at": "2024-03-01T10:00:00Z"},
                "conversations": [{"id": i, "body_text": f"m{i}", "incoming": True,
                                   "user_id": 1, "created_at": "2024-03-01T10:00:00Z"}
                                  for i in range(k)]}

    path = tmp_path / "tickets.json"
    path.write_text(json.dumps([ticket(1, n), ticket(2, 1)]))
    return path


def _jsonl(tmp_path: Path, n: int) -> Path:
    def conv(cid: str, k: int) -> dict[str, Any]:
        return {"conversation_id": cid, "started_at": "2024-03-01T10:00:00Z",
                "participants": [{"id": "a", "role": "customer"}],
                "messages": [{"id": f"m{i}", "at": "2024-03-01T10:00:00Z", "from": "a",
                              "text": "x"} for i in range(k)]}

    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(conv(c, k)) for c, k in (("big", n), ("small", 1))))
    return path


REFUSING: dict[str, tuple[Callable[[Path, int], Path], str, str]] = {
    "slack": (_slack, "C1:2024-03-01", "C1:2024-03-02"),
    "botframework": (_botframework, "big", "small"),
    "rasa": (_rasa, "big", "small"),
    "intercom": (_intercom, "big", "small"),
    "freshdesk": (_freshdesk, "ticket-1", "ticket-2"),
    "jsonl": (_jsonl, "big", "small"),
}


@pytest.mark.parametrize("fmt", sorted(REFUSING))
def test_other_formats_refuse_out_loud_and_read_the_rest(tmp_path: Path, fmt: str) -> None:
    write, big, small = REFUSING[fmt]
    path = write(tmp_path, LIMIT + 2)
    convs, opts = read_all(path, fmt)

    assert ids(convs) == [small]  # never the big one cut down to the limit
    refused = [p for p in opts.problems if p.refused]
    assert len(refused) == 1, opts.problems
    assert big in refused[0].position
    assert f"{LIMIT + 2} messages" in refused[0].expected
    assert refused[0].path.startswith(str(path))


@pytest.mark.parametrize("fmt", sorted(REFUSING))
def test_other_formats_at_the_limit_read_whole(tmp_path: Path, fmt: str) -> None:
    write, big, small = REFUSING[fmt]
    convs, opts = read_all(write(tmp_path, LIMIT), fmt)
    assert sorted(ids(convs)) == sorted([big, small]) and opts.problems == []
    assert max(len(c["messages"]) for c in convs) == LIMIT


def test_jsonl_chat_log_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps({"id": str(i), "text": "x", "from": "ana",
                                          "at": 1709287200 + i}) for i in range(7)))
    convs, opts = read_all(path, "jsonl")
    assert convs == [] and opts.refusals == 1
    assert "7 messages" in opts.problems[0].expected


def test_other_formats_refuse_a_record_too_large_in_bytes(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(records, "MAX_ITEMS", 1000)
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 1500)
    convs, opts = read_all(_freshdesk(tmp_path, 20), "freshdesk")
    assert ids(convs) == ["ticket-2"]
    assert "ticket-1" in opts.problems[0].position and "bytes" in opts.problems[0].expected


# -- commands --------------------------------------------------------------------------------

def test_convert_writes_the_parts_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", telegram(tmp_path), "-f", "telegram", "-o", out,
                     "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["conversations"] == 3 and doc["messages"] == 12  # type: ignore[index]
    assert doc["refused"] == 0  # type: ignore[index]


def test_convert_refusal_exits_3_keeps_the_rest_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", _freshdesk(tmp_path, 9), "-f", "freshdesk",
                     "-o", out)
    assert result.code == 3
    assert "ticket-1" in result.err and "9 messages" in result.err
    assert "left data out" in result.err
    assert [json.loads(line)["conversation_id"] for line in out.read_text().splitlines()] == [
        "ticket-2"]


def test_zip_with_more_members_than_read_says_so(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.sources import whatsapp as wa

    monkeypatch.setattr(wa, "MAX_ZIP_MEMBERS", 2)
    path = tmp_path / "WhatsApp Chat - Ana.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("_chat.txt", "01/03/2024, 10:00 - Ana: hi\n")
        for i in range(3):
            zf.writestr(f"IMG-{i}.jpg", b"x")
    convs, opts = read_all(path, "whatsapp")
    assert len(convs) == 1
    [problem] = opts.problems
    assert problem.refused and "2 of 4 were left out" in problem.expected


def test_export_run_seals_the_parts_and_refuses_out_loud(tmp_path: Path) -> None:
    import export_kit
    from vault import exporter

    site = export_kit.make_site(tmp_path, convs=[])
    (tmp_path / "tg").mkdir()
    (tmp_path / "fd").mkdir()
    export_kit.add_source(site, "tg", telegram(tmp_path / "tg"), "telegram")
    export_kit.add_source(site, "fd", _freshdesk(tmp_path / "fd", 9), "freshdesk")

    report = exporter.run(site.exporter.path, media=site.stick)
    by_name = {s.name: s for s in report.sources}
    assert by_name["tg"].exit_code == 0 and by_name["tg"].messages == 12
    assert by_name["fd"].exit_code == 3 and by_name["fd"].conversations == 1
    assert any("ticket-1" in e and "9 messages" in e for e in by_name["fd"].errors)
    held = export_kit.vault_view(site)
    assert sorted(held) == ["42#2024-01", "42#2024-02", "42#2024-03", "ticket-2"]
