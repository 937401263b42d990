"""The reader and phone cases of ../shared/cases: each input broke another tool.

Expected values are written here, not read from cases.json; inputs are read
from ../shared/cases/inputs and the test skips when they are absent. Each
case stands for a kind of fault; the reader tests cover the kind further.
"""

from __future__ import annotations

import logging

import pytest

from conftest_readers import (case_input, events, found, messages, names, read_all,
                              texts)
from vault import identifiers, timestamps


def local_times(convs: list[dict]) -> list[str]:
    return [timestamps.local_text(m["at"], m.get("at_offset")) for m in messages(convs)]


def media(convs: list[dict]) -> int:
    return sum(1 for m in messages(convs) if m.get("attachments"))


# -- WhatsApp ------------------------------------------------------------------------

def test_01_wa_narrow_nbsp_before_am_pm() -> None:
    convs, opts = read_all(case_input("01-wa-nnbsp-ampm.txt"), "whatsapp")
    assert len(messages(convs)) == 3
    assert len(events(convs)) == 1
    assert names(convs) == ["Ana Example", "Ben Sample"]
    assert local_times(convs) == ["2024-03-01T10:02", "2024-03-01T10:05", "2024-03-01T14:35"]
    assert media(convs) == 1
    assert "Hi, my parcel has not arrived" in texts(convs)
    assert "Sorry Ana, we will resend it today" in texts(convs)
    assert not any("AM" in n or "PM" in n for n in names(convs))
    assert opts.problems == []


def test_01_wa_keeps_wall_clock_with_a_time_zone() -> None:
    convs, _ = read_all(case_input("01-wa-nnbsp-ampm.txt"), "whatsapp",
                        timezone="America/New_York")
    assert local_times(convs) == ["2024-03-01T10:02", "2024-03-01T10:05", "2024-03-01T14:35"]
    assert messages(convs)[0]["at"] == "2024-03-01T15:02:00Z"
    assert messages(convs)[0]["at_offset"] == "-05:00"


def test_02_wa_spanish_p_m_with_nbsp() -> None:
    convs, _ = read_all(case_input("02-wa-es-pm-nbsp.txt"), "whatsapp")
    assert len(messages(convs)) == 3
    assert names(convs) == ["Lucía Ejemplo", "Ben Sample"]
    assert local_times(convs) == ["2024-03-01T08:28", "2024-03-01T20:31", "2024-03-01T20:40"]
    assert convs[0]["extra"]["date_order"] == "dmy"
    assert "Claro, ¿cuál es su número de pedido?" in texts(convs)
    assert not any(n.startswith(("p. m.", "m. ", "a. m.")) for n in names(convs))


def test_04_wa_24_hour_lines_are_not_skipped() -> None:
    convs, _ = read_all(case_input("04-wa-24h.txt"), "whatsapp")
    assert len(messages(convs)) == 4
    assert names(convs) == ["Ana Example", "Ben Sample"]
    assert local_times(convs) == ["2024-03-01T13:24", "2024-03-01T13:24",
                                  "2024-03-01T13:30", "2024-03-01T00:05"]
    assert "Buenas tardes" in texts(convs)
    assert "Dígame" in texts(convs)


def test_06_wa_lrm_marks_and_group_notices() -> None:
    convs, opts = read_all(case_input("06-wa-lrm-system.txt"), "whatsapp")
    assert len(messages(convs)) == 3
    assert len(events(convs)) == 2
    assert names(convs) == ["Ana Example", "Ben Sample"]
    assert "Support Group" not in names(convs)
    assert not any("\u200e" in n for n in names(convs))
    assert media(convs) == 1
    assert sum(1 for m in messages(convs) if m.get("edited")) == 1
    assert "Hello, where is my refund?" in texts(convs)
    assert opts.problems == []


# -- Telegram ------------------------------------------------------------------------

def test_07_tg_text_as_list_of_entities() -> None:
    convs, _ = read_all(case_input("07-tg-text-entities.json"), "telegram")
    assert len(messages(convs)) == 3
    assert names(convs) == ["Ana Example", "Support Desk"]
    assert texts(convs) == [
        "Hi, my email is ana.example@example.org and phone +44 7700 900123. Urgent!",
        "Thanks, we will call you back",
        "https://example.org/help",
    ]
    ids = found(convs, "GB")
    assert ids.emails == ["ana.example@example.org"]
    assert ids.phones == ["+447700900123"]
    assert not any(t.startswith("[") for t in texts(convs))


def test_08_tg_service_without_from_and_captionless_photo() -> None:
    convs, _ = read_all(case_input("08-tg-service-no-from.json"), "telegram")
    assert len(messages(convs)) == 2
    assert len(events(convs)) == 2
    assert all(e["from"] is None for e in events(convs))
    assert names(convs) == ["Ana Example", "Ben Sample"]
    forwarded = {m["id"]: m["forwarded_from"] for m in messages(convs)
                 if m.get("forwarded_from")}
    assert forwarded == {"2": "Carla Muster"}
    assert media(convs) == 1
    assert "Forwarded: return label attached" in texts(convs)


# -- Messenger -----------------------------------------------------------------------

def test_10_fb_mojibake_repaired_and_chronological() -> None:
    convs, _ = read_all(case_input("10-fb-mojibake.json"), "messenger")
    assert len(messages(convs)) == 2
    assert names(convs) == ["Zoë Example", "Ben Sample"]
    assert texts(convs) == [
        "Mon colis est arrivé abîmé 😠 — écrivez à zoe.example@example.org",
        "Bonjour Zoë, ça va ? Réponse sous 24 h 🙂",
    ]
    assert messages(convs)[0]["at"] == "2024-03-01T10:00:00Z"  # timestamp_ms 1709287200000
    assert found(convs).emails == ["zoe.example@example.org"]
    assert not any("Ã" in t or "ð" in t for t in texts(convs) + names(convs))


# -- Slack ---------------------------------------------------------------------------

def test_12_slack_uslackbot_not_in_users_json() -> None:
    convs, _ = read_all(case_input("12-slack-uslackbot.zip"), "slack")
    assert len(convs) == 2
    assert len(messages(convs)) == 3
    assert sorted(names(convs)) == ["Ana Example", "Slackbot"]
    ids = found(convs, "GB")
    assert ids.emails == ["ana.example@example.org"]
    assert ids.phones == ["+447700900123"]
    # Ana never wrote in her DM with Slackbot, yet it is hers: she is one of its participants
    [dm] = [c for c in convs if c["extra"]["channel_kind"] == "dm"]
    people = {p["id"]: p for p in dm["participants"]}
    assert sorted(people) == ["U01ANA0001", "USLACKBOT"]
    assert people["U01ANA0001"]["email"] == "ana.example@example.org"
    assert people["U01ANA0001"]["role"] == "customer"
    assert found([dm], "GB").emails == ["ana.example@example.org"]


def test_13_slack_external_user_keeps_raw_id() -> None:
    convs, _ = read_all(case_input("13-slack-external-user.zip"), "slack")
    assert len(convs) == 1
    assert len(messages(convs)) == 2
    # the group DM's third member, Ben, never wrote: the case lists the writers only
    assert names(convs) == ["Carla Muster", "Ana Example"]
    assert "U09EXT0009" in [p["id"] for p in convs[0]["participants"]]
    assert "Partner courier here: parcel 4471 is at the depot" in texts(convs)


def test_15_slack_bot_message_without_user() -> None:
    convs, _ = read_all(case_input("15-slack-bot-no-user.zip"), "slack")
    assert len(messages(convs)) == 2
    assert names(convs) == ["Order Bot", "Ben Sample"]
    assert "Order 4471 shipped to Ana Example" in texts(convs)
    attachment_texts = [a.get("text") for m in messages(convs)
                        for a in m.get("attachments", [])]
    assert attachment_texts == ["Tracking AB123456789GB"]


# -- Bot Framework -------------------------------------------------------------------

def test_17_bf_conversation_update_without_from() -> None:
    convs, _ = read_all(case_input("17-bf-conversationupdate.transcript"), "botframework")
    assert len(messages(convs)) == 2
    assert sorted(names(convs)) == ["Ana Example", "HelpBot"]
    assert found(convs).emails == ["ana.example@example.org"]
    assert convs[0]["extra"]["skipped"] == {"typing": 1}


# -- phone numbers -------------------------------------------------------------------

def test_23_phone_region_uk_is_gb_and_fictional_ranges_kept() -> None:
    text = case_input("23-phone-uk-vs-gb.txt").read_text("utf-8")
    for region in ("UK", "GB", "gb"):
        phones, unparsed = identifiers.find_phones(text, region)
        assert phones == ["+447700900123", "+442079460018", "+447700900456"]
        assert unparsed == []
    with pytest.raises(ValueError, match="unknown phone region"):
        identifiers.find_phones(text, "ENGLAND")


def test_25_phone_without_region_is_reported_not_guessed() -> None:
    text = case_input("25-phone-no-region.txt").read_text("utf-8")
    assert identifiers.find_phones(text, None) == (["+12025550148"], ["12025550147"])
    assert identifiers.find_phones(text, "US") == (["+12025550147", "+12025550148"], [])


# -- JSONL ---------------------------------------------------------------------------

def test_26_zstd_stream_without_content_size() -> None:
    convs, _ = read_all(case_input("26-zstd-stream-no-size.jsonl.zst"), "jsonl")
    assert len(messages(convs)) == 2
    assert sorted(names(convs)) == ["Ana Example", "Ben Sample"]


def test_26_messages_without_time_are_a_warning_not_a_failed_run(
        caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is left out, so the run must not fail; the file is named."""
    path = case_input("26-zstd-stream-no-size.jsonl.zst")
    with caplog.at_level(logging.WARNING, logger="vault.sources.jsonl"):
        convs, opts = read_all(path, "jsonl")
    assert opts.problems == []
    assert convs[0]["extra"]["time_source"] == "file modification time"
    assert str(path) in caplog.text and "modification time" in caplog.text
