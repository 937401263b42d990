"""WhatsApp reader: the corpus files, written fixtures, and a round-trip property."""

from __future__ import annotations

import hashlib
import logging
import unicodedata
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest_readers import corpus_file, events, messages, names, read_all, texts
from vault import timestamps
from vault.errors import UnreadableExport
from vault.sources import whatsapp


def local(msg: dict) -> str:
    return timestamps.local_text(msg["at"], msg.get("at_offset"))


# -- corpus ----------------------------------------------------------------------------

def test_corpus_testlog_mixed_formats() -> None:
    path = corpus_file("whatsapp/testlog.txt")
    convs, opts = read_all(path, "whatsapp")
    assert opts.problems == []
    assert len(convs) == 1
    assert len(messages(convs)) == 20
    assert len(events(convs)) == 3
    assert names(convs) == ["John Doe", "Jahn Doe", "+12 345 578", "John-John Doe",
                            "John Doe 🤓", "🤓"]
    assert convs[0]["extra"]["date_order"] == "mdy"
    raw = path.read_text("utf-8")
    got = texts(convs)
    for text in ("Lorem ipsum : dolor sit amet.", "Testing dash - in message body",
                 "Testing abnormal\u00a0unicode", "Testing emoji 🤓 with yyyy first",
                 "Lorem ipsum dolor sit amet,\nconsectetur adipiscing elit. Duis libero."):
        assert text in raw and text in got
    five_lines = [t for t in got if t.count("\n") == 5]
    assert five_lines and five_lines[0].endswith("Cras scelerisque neque.")
    by_text = {m["text"]: local(m) for m in messages(convs)}
    assert by_text["Hello world"] == "2019-09-24T23:30"
    assert by_text["Testing am"] == "2019-09-24T11:30"
    assert by_text["Testing brackets"] == "2022-09-10T22:37"
    assert by_text["Testing date dashes"] == "2022-09-10T22:37"
    assert by_text["Testing dash - in message body"] == "2021-10-24T15:21"
    phone_named = [p for p in convs[0]["participants"] if p["name"] == "+12 345 578"]
    assert phone_named[0]["phone"] == "+12 345 578"


def test_corpus_ios_chat_with_media() -> None:
    convs, opts = read_all(corpus_file("whatsapp/whatsapp_chat.txt"), "whatsapp")
    assert opts.problems == []
    assert len(messages(convs)) == 11
    assert len(events(convs)) == 1
    assert names(convs) == ["Dr. Feather", "Jungle Jane"]
    media = [m for m in messages(convs) if m.get("attachments")]
    assert len(media) == 3
    assert all(m["text"] == "" and m["attachments"][0]["omitted"] for m in media)
    assert "That's stunning! Were you able to observe its behavior?" in texts(convs)
    assert local(messages(convs)[-1]) == "2023-08-15T21:25"
    assert convs[0]["title"] == "Dr. Feather"


# -- fixtures ---------------------------------------------------------------------------

def write(tmp_path: Path, text: str, name: str = "chat.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_malformed_lines_reported_and_rest_read(tmp_path: Path) -> None:
    path = write(tmp_path, "stray first line\n"
                           "31/31/2024, 10:00 - Ana: bad date\n"
                           "25/03/2024, 10:01 - Ana: good one\n"
                           "25/03/2024, 10:02 - Ben: second\n")
    convs, opts = read_all(path, "whatsapp")
    assert texts(convs) == ["good one", "second"]
    assert [(p.position, p.expected) for p in opts.problems] == [
        ("line 1", "a line starting with a date and a time"),
        ("line 2", "a valid date and time")]


@pytest.mark.parametrize("content", ["", "hello\nworld\n", "\x00\x01\x02"])
def test_nothing_readable_is_refused(tmp_path: Path, content: str) -> None:
    with pytest.raises(UnreadableExport, match="chat.txt"):
        read_all(write(tmp_path, content), "whatsapp")


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_bytes(b"25/03/2024, 10:01 - Ana: caf\xe9\n")
    with pytest.raises(UnreadableExport, match="not UTF-8"):
        read_all(path, "whatsapp")


def test_ids_are_stable_as_the_chat_grows_and_old_lines_drop(tmp_path: Path) -> None:
    lines = [f"2{d}/03/2024, 10:0{d} - Ana: message {d}\n" for d in range(5)]
    name = "WhatsApp Chat with Ana.txt"
    (tmp_path / "early").mkdir()
    (tmp_path / "later").mkdir()
    first, _ = read_all(write(tmp_path / "early", "".join(lines[:3]), name), "whatsapp")
    later, _ = read_all(write(tmp_path / "later", "".join(lines[1:]), name), "whatsapp")
    assert first[0]["conversation_id"] == later[0]["conversation_id"]
    assert first[0]["title"] == later[0]["title"] == "Ana"
    ids_first = {m["text"]: m["id"] for m in first[0]["messages"]}
    ids_later = {m["text"]: m["id"] for m in later[0]["messages"]}
    assert ids_first["message 1"] == ids_later["message 1"]
    assert ids_first["message 2"] == ids_later["message 2"]


def test_date_order_from_sequence_then_default(tmp_path: Path) -> None:
    # 12 Jan then 1 Feb reads in sequence only day-first
    chat = "12/01/24, 10:00 - Ana: a\n01/02/24, 10:00 - Ana: b\n"
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert [local(m) for m in messages(convs)] == ["2024-01-12T10:00", "2024-02-01T10:00"]
    # no evidence at all: English AM/PM means month first, otherwise day first
    us, _ = read_all(write(tmp_path, "3/1/24, 9:00 AM - Ana: a\n", "us.txt"), "whatsapp")
    eu, _ = read_all(write(tmp_path, "3/1/24, 09:00 - Ana: a\n", "eu.txt"), "whatsapp")
    assert local(messages(us)[0]) == "2024-03-01T09:00"
    assert local(messages(eu)[0]) == "2024-01-03T09:00"


def test_text_kept_exactly(tmp_path: Path) -> None:
    body = "  spaced\u200e mark \u2028 separator\u00a0nbsp  "
    chat = (f"25/03/2024, 10:01 - \u200eAna\u200f: {body}\r\n"
            "continued line\r\n"
            "25/03/2024, 10:02 - Ben: done\r\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert texts(convs) == [body + "\ncontinued line", "done"]
    assert names(convs) == ["Ana", "Ben"]


def test_android_attachment_with_caption_and_file_hashed(tmp_path: Path) -> None:
    (tmp_path / "IMG-1.jpg").write_bytes(b"jpeg bytes")
    chat = ("25/03/2024, 10:01 - Ana: IMG-1.jpg (file attached)\nmy receipt\n"
            "25/03/2024, 10:02 - Ana: IMG-2.jpg (file attached)\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    first, second = messages(convs)
    assert first["text"] == "my receipt"
    assert first["attachments"][0]["sha256"] == hashlib.sha256(b"jpeg bytes").hexdigest()
    assert first["attachments"][0]["size"] == 10
    assert "omitted" not in first["attachments"][0]
    assert second["text"] == "" and second["attachments"][0]["omitted"] is True


def test_ios_zip_export(tmp_path: Path) -> None:
    path = tmp_path / "WhatsApp Chat - Support Group.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("_chat.txt", "[25/03/2024, 10:00:00] Support Group: \u200eMessages and "
                    "calls are end-to-end encrypted.\n"
                    "[25/03/2024, 10:01:00] Ana: \u200e<attached: 0001-PHOTO.jpg>\n")
        zf.writestr("0001-PHOTO.jpg", b"photo")
    convs, _ = read_all(path, "whatsapp")
    assert convs[0]["title"] == "Support Group"
    assert names(convs) == ["Ana"]
    att = messages(convs)[0]["attachments"][0]
    assert att["name"] == "0001-PHOTO.jpg"
    assert att["sha256"] == hashlib.sha256(b"photo").hexdigest()


def test_deleted_placeholder(tmp_path: Path) -> None:
    chat = ("25/03/2024, 10:01 - Ana: This message was deleted\n"
            "25/03/2024, 10:02 - Ben: \u200eYou deleted this message.\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert [(m["text"], m.get("deleted")) for m in messages(convs)] == [("", True),
                                                                      ("", True)]
    assert messages(convs)[0]["extra"]["placeholder"] == "This message was deleted"


def test_timezone_offset_kept(tmp_path: Path) -> None:
    chat = "25/07/2024, 10:01 - Ana: summer\n25/01/2024, 10:01 - Ana: winter\n"
    convs, _ = read_all(write(tmp_path, chat), "whatsapp", timezone="Europe/London")
    summer, winter = messages(convs)
    assert (summer["at"], summer["at_offset"]) == ("2024-07-25T09:01:00Z", "+01:00")
    assert winter["at"] == "2024-01-25T10:01:00Z" and "at_offset" not in winter


# -- system lines with ": " in them ------------------------------------------------------

ANDROID_GROUP = """\
01/03/2024, 09:00 - Ana Example created group "Support: refunds"
01/03/2024, 09:01 - Ana Example added Ben Sample
01/03/2024, 09:02 - Ana Example: hello: is anyone there?
01/03/2024, 09:03 - You changed the subject from "Support: refunds" to "Help: all"
01/03/2024, 09:04 - Ben Sample changed the group description
01/03/2024, 09:05 - Ben Sample: yes: how can I help
01/03/2024, 09:06 - Ana Example hat die Gruppe \u201eTeam: Nord\u201c erstellt
01/03/2024, 09:07 - Lucía creó el grupo «Ventas: Norte»
01/03/2024, 09:08 - Ana Example changed the group name to \u201cTrip: Paris\u201d
"""


def test_system_lines_with_a_colon_are_not_messages(tmp_path: Path) -> None:
    convs, opts = read_all(write(tmp_path, ANDROID_GROUP), "whatsapp")
    assert opts.problems == []
    assert names(convs) == ["Ana Example", "Ben Sample"]
    assert texts(convs) == ["hello: is anyone there?", "yes: how can I help"]
    assert [e["text"] for e in events(convs)] == [
        'Ana Example created group "Support: refunds"',
        "Ana Example added Ben Sample",
        'You changed the subject from "Support: refunds" to "Help: all"',
        "Ben Sample changed the group description",
        "Ana Example hat die Gruppe \u201eTeam: Nord\u201c erstellt",
        "Lucía creó el grupo «Ventas: Norte»",
        "Ana Example changed the group name to \u201cTrip: Paris\u201d"]
    assert all(e["from"] is None for e in events(convs))


def test_unclosed_quote_in_a_notice_of_unknown_wording(tmp_path: Path) -> None:
    chat = ('01/03/2024, 09:00 - Ana set the group topic to "Refunds: March"\n'
            "01/03/2024, 09:01 - Ana: hi\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert names(convs) == ["Ana"] and len(events(convs)) == 1


def test_a_person_whose_name_has_a_quote_still_writes(tmp_path: Path) -> None:
    chat = ('01/03/2024, 09:00 - Robert "Bob: hi\n'
            '01/03/2024, 09:01 - Robert "Bob: it is me: again\n'
            "01/03/2024, 09:02 - Ana \u201eAni\u201c Example: hello\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert names(convs) == ['Robert "Bob', "Ana \u201eAni\u201c Example"]
    assert texts(convs) == ["hi", "it is me: again", "hello"] and events(convs) == []


def test_ios_group_whose_name_holds_a_colon(tmp_path: Path) -> None:
    chat = ("[01/03/2024, 09:00:00] Trip: Paris: \u200eMessages and calls are "
            "end-to-end encrypted.\n"
            "[01/03/2024, 09:00:05] Trip: Paris: \u200eAna added Ben\n"
            "[01/03/2024, 09:01:00] Ana: hello\n"
            "\u200e[01/03/2024, 09:02:00] Ben: \u200eimage omitted\n")
    convs, _ = read_all(write(tmp_path, chat), "whatsapp")
    assert names(convs) == ["Ana", "Ben"]
    assert len(events(convs)) == 2 and convs[0]["title"] == "Trip: Paris"
    assert len(messages(convs)) == 2


# -- property: any chat in any style reads back --------------------------------------

# Every Unicode space separator (category Zs: U+0020, U+00A0, U+1680, U+2000-U+200A,
# U+202F, U+205F, U+3000), drawn separately for each place the header has a space:
# before the AM/PM marker and inside "p. m.", after the date's comma (or between
# date and time), before and after the dash, after the closing bracket. Phones
# write U+202F and U+00A0 there (cases 01, 02); the reader takes any of them
# (its header pattern matches them as whitespace), so none is left out here.
# The space after the author's colon is drawn too: WhatsApp writes U+0020 there,
# but a copy that went through an editor may not, and "Ana:\u00a0hi" must not
# become a system line without an author.
ALL_ZS = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"]
SPACES = st.characters(whitelist_categories=("Zs",)) | st.sampled_from(["\u202f", "\u00a0"])
MARKERS = [("AM", "PM"), ("am", "pm"), ("a.m.", "p.m."), ("a.{sp}m.", "p.{sp}m.")]
_name = st.text(st.characters(whitelist_categories=("Lu", "Ll")) | st.sampled_from(" -.'"),
                min_size=1, max_size=16).map(str.strip).filter(
                    lambda s: bool(s) and s[0].isalpha())
_text = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Zs", "Po", "So"),
                              blacklist_characters="\u200e\u200f\ufeff")
                | st.just("\n"), max_size=40)
_moment = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 28))


def _fmt_date(moment: datetime, order: str, sep: str, year4: bool) -> str:
    year = f"{moment.year}" if year4 else f"{moment.year % 100:02d}"
    if order == "ymd":
        return f"{moment.year}{sep}{moment.month:02d}{sep}{moment.day:02d}"
    first, second = (moment.day, moment.month) if order == "dmy" else (moment.month, moment.day)
    return f"{first}{sep}{second}{sep}{year}"


def _fmt_time(moment: datetime, h12: bool, seconds: bool, sp: str, marker: tuple) -> str:
    hour = moment.hour % 12 or 12 if h12 else moment.hour
    text = f"{hour}:{moment.minute:02d}" + (f":{moment.second:02d}" if seconds else "")
    if h12:
        text += sp + marker[moment.hour >= 12].format(sp=sp)
    return text


def _header(style: str, date: str, when: str, sp: dict[str, str]) -> str:
    """The start of a line, each space of the format written with its own character."""
    return {"bracket": f"[{date},{sp['comma']}{when}]{sp['after']}",
            "dash": f"{date},{sp['comma']}{when}{sp['before']}-{sp['after']}",
            "nocomma": f"{date}{sp['comma']}{when}{sp['before']}-{sp['after']}"}[style]


_PLACES = ("ampm", "comma", "before", "after", "colon")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chat=st.lists(st.tuples(_moment, _name, _text), min_size=1, max_size=8),
       anchor=st.integers(13, 28), style=st.sampled_from(["bracket", "dash", "nocomma"]),
       order=st.sampled_from(["dmy", "mdy", "ymd"]), sep=st.sampled_from("/.-"),
       year4=st.booleans(), h12=st.booleans(),
       sp=st.fixed_dictionaries({place: SPACES for place in _PLACES}),
       marker=st.sampled_from(MARKERS))
def test_any_chat_in_any_style_reads_back(tmp_path: Path, chat: list, anchor: int,
                                          style: str, order: str, sep: str, year4: bool,
                                          h12: bool, sp: dict[str, str],
                                          marker: tuple) -> None:
    seconds = style == "bracket"
    chat = sorted((m.replace(microsecond=0, second=m.second if seconds else 0), n, t)
                  for m, n, t in chat)
    first = chat[0][0]
    chat[0] = (first.replace(day=anchor), chat[0][1], chat[0][2])  # one day > 12
    chat.sort()
    lines = []
    for moment, name, text in chat:
        date = _fmt_date(moment, order, sep, year4)
        when = _fmt_time(moment, h12, seconds, sp["ampm"], marker)
        lines.append(f"{_header(style, date, when, sp)}{name}:{sp['colon']}{text}")
        for cont in text.split("\n")[1:]:
            assume(not whatsapp._HEADER.match(cont.lstrip(whatsapp.MARKS)))
        assume(not whatsapp._MEDIA.match(text) and not whatsapp._EDITED.search(text)
               and not whatsapp._DELETED.match(text.strip(whatsapp.MARKS)))
    path = tmp_path / "prop.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    convs, opts = read_all(path, "whatsapp")
    assert opts.problems == []
    got = [(m["from"], m["text"], m["at"]) for m in convs[0]["messages"]]
    want = [(n, t, m.strftime("%Y-%m-%dT%H:%M:%SZ")) for m, n, t in chat]
    assert got == want


@pytest.mark.parametrize("space", ALL_ZS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("style", ["bracket", "dash", "nocomma"])
def test_every_space_separator_in_every_place(tmp_path: Path, style: str, space: str) -> None:
    """Each Zs character, every run, in every place at once and one place at a time."""
    text = f"keep{space}this{space}: as{space} written{space}"
    lines = []
    for n, places in enumerate([_PLACES, *([p] for p in _PLACES)]):
        sp = {place: space if place in places else " " for place in _PLACES}
        for minute, marker in ((n * 2, ("PM", "PM")), (n * 2 + 1, ("p.{sp}m.", "p.{sp}m."))):
            when = _fmt_time(datetime(2024, 3, 25, 21, minute, 5), True, style == "bracket",
                             sp["ampm"], marker)
            lines.append(f"{_header(style, '25/03/2024', when, sp)}Ana Example:"
                         f"{sp['colon']}{text}")
    path = tmp_path / "spaces.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    convs, opts = read_all(path, "whatsapp")
    assert opts.problems == []
    got = [(m["from"], m["text"], m["at"]) for m in convs[0]["messages"]]
    second = "05" if style == "bracket" else "00"
    assert got == [("Ana Example", text, f"2024-03-25T21:{minute:02d}:{second}Z")
                   for minute in range(len(lines))]


def test_reading_without_a_timezone_says_times_are_taken_as_utc(
        caplog: pytest.LogCaptureFixture) -> None:
    path = corpus_file("whatsapp/whatsapp_chat.txt")
    with caplog.at_level(logging.WARNING, logger="vault.sources"):
        read_all(path, "whatsapp")
    assert "no timezone is set: they are read as UTC" in caplog.text
    assert str(path) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vault.sources"):
        read_all(path, "whatsapp", timezone="Europe/London")
    assert "no timezone" not in caplog.text


# -- what is not a WhatsApp chat, or not UTF-8 ---------------------------------------------

CHAT = "25/03/2024, 10:01 - Ana: hello\n25/03/2024, 10:02 - Ben: hi Ana\n"
NOT_CHATS = {"prose": "hello\nworld\n".encode(), "binary": bytes(range(256)) * 4,
             "utf16": CHAT.encode("utf-16"), "latin1": "caf\xe9\n".encode("latin-1"),
             "empty": b""}


@pytest.mark.parametrize("content", sorted(NOT_CHATS))
def test_no_timezone_warning_for_a_file_that_is_not_a_chat(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(NOT_CHATS[content])
    with caplog.at_level(logging.WARNING, logger="vault.sources"):
        with pytest.raises(UnreadableExport, match="notes.txt"):
            read_all(path, "whatsapp")
    assert "no timezone" not in caplog.text


def test_no_timezone_warning_once_in_a_folder_when_something_is_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-notes.txt").write_bytes(NOT_CHATS["utf16"])
    (tmp_path / "b-chat.txt").write_text(CHAT, encoding="utf-8")
    (tmp_path / "c-chat.txt").write_text(CHAT, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="vault.sources"):
        convs, opts = read_all(tmp_path, "whatsapp")
    assert len(convs) == 2 and [p.path for p in opts.problems] == [
        str(tmp_path / "a-notes.txt")]
    assert caplog.text.count("no timezone is set: they are read as UTC") == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("zipped", [False, True], ids=["txt", "zip"])
def test_utf16_is_said_to_be_utf16(tmp_path: Path, encoding: str, zipped: bool) -> None:
    data = ("\ufeff" if encoding != "utf-16" and encoding != "utf-32" else "") + CHAT
    raw = data.encode(encoding)
    path = tmp_path / ("chat.zip" if zipped else "chat.txt")
    if zipped:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("_chat.txt", raw)
    else:
        path.write_bytes(raw)
    with pytest.raises(UnreadableExport) as info:
        read_all(path, "whatsapp")
    name = "UTF-32" if "32" in encoding else "UTF-16"
    assert info.value.detail == (f"not UTF-8 text: it starts with a {name} byte order mark, "
                                 f"so it looks like {name}; re-save it as UTF-8")


def test_utf16_without_a_byte_order_mark_is_said_to_be_utf16(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_bytes(CHAT.encode("utf-16-le"))  # valid UTF-8, as NUL is: no date is found
    with pytest.raises(UnreadableExport, match="looks like UTF-16 without a byte order mark"):
        read_all(path, "whatsapp")


def test_latin1_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_bytes(b"25/03/2024, 10:01 - Ana: caf\xe9\n")
    with pytest.raises(UnreadableExport) as info:
        read_all(path, "whatsapp")
    assert info.value.detail.startswith("not UTF-8 text: byte 28 (0xE9) is not UTF-8")
    assert "surrogates" not in info.value.detail
