"""Every reader on every corpus file (../shared/corpus): counts, identifiers, texts.

One table row per corpus file and format. The counts were determined by
reading each file by hand and are written here as literal numbers:

* conversations;
* messages: every message record, system events included, and of them the
  system events (activities the reader skips by design, Bot Framework
  ``typing``/``trace`` and Rasa ``action_listen``, are not records);
* participants: participant records across conversations, named or not
  (a person in three Slack channel-days is three records), and of them the
  unnamed ones.

Identifiers are the e-mails and phones the vault would index (participants
and message text, no region), plus the digit strings that need a region.

Texts: every message text must equal the text in the raw file. The expected
texts are computed here from the raw bytes with plain ``json``/``zipfile``/
``re``, never with the reader; where a reader transforms text by design,
only that documented transformation is applied, and the parser says so.

Not here: ``irc/`` (no reader; ``chatvault sources formats``) and
``customer_service_datasets/`` (ABCD and Taskmaster research datasets, no
platform's export format, no reader either).
"""

from __future__ import annotations

import html
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest_readers import corpus_file, found, read_all

#: per conversation, the texts of its messages in record order
Texts = list[list[str]]


# -- expected texts, from the raw files ------------------------------------------------

def _json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def botframework_texts(path: Path) -> Texts:
    """Activities in file order per conversation; ``typing`` and ``trace`` are no
    records; an activity without text (conversationUpdate, a card) has text ""."""
    convs: dict[str, list[str]] = {}
    for act in _json(path):
        if act["type"] in ("typing", "trace"):
            continue
        convs.setdefault(act["conversation"]["id"], []).append(act.get("text", ""))
    return list(convs.values())


def _unmojibake(text: str) -> str:
    """Messenger's documented repair: Latin-1 encode, UTF-8 decode, when both work."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def messenger_texts(path: Path) -> Texts:
    """Messages are newest first in the file and chronological in the record (same
    millisecond: file order reversed); ``content`` mojibake-repaired, "" if absent."""
    raw = list(reversed(_json(path)["messages"]))
    raw.sort(key=lambda m: m["timestamp_ms"])
    return [[_unmojibake(m.get("content", "")) for m in raw]]


def freshdesk_texts(path: Path) -> Texts:
    """The ticket's ``description_text`` first, then each entry's ``body_text``."""
    doc = _json(path)
    return [[doc["ticket"]["description_text"]] + [c["body_text"]
                                                   for c in doc["conversations"]]]


def _plain(body: str) -> str:
    """Intercom bodies are HTML and the reader documents a plain-text rendering; these
    bodies are single paragraphs, so the rendering is: tags off, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def intercom_texts(path: Path) -> Texts:
    """The conversation's ``source`` body, then each part's body (webhook envelope)."""
    item = _json(path)["data"]["item"]
    parts = item["conversation_parts"]["conversation_parts"]
    return [[_plain(item["source"]["body"])] + [_plain(p["body"]) for p in parts]]


def rasa_texts(path: Path) -> Texts:
    """Events in file order; ``action_listen`` is no record; an action (an event, not
    a message) has text ""; user and bot events their ``text``."""
    out = []
    for event in _json(path)["events"]:
        if event["event"] == "action":
            if event["name"] != "action_listen":
                out.append("")
        else:
            out.append(event["text"])
    return [out]


def slack_texts(path: Path) -> Texts:
    """One conversation per channel folder and day file, messages in ``ts`` order,
    ``text`` exactly (a ``channel_join`` notice too)."""
    out = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if re.fullmatch(r"[^/]+/\d{4}-\d{2}-\d{2}\.json", name):
                day = json.loads(archive.read(name))
                day.sort(key=lambda m: float(m["ts"]))
                out.append([m["text"] for m in day])
    return out


def telegram_texts(path: Path) -> Texts:
    """``text`` is a string or a list of strings and entity objects: the documented
    mapping joins the pieces' text exactly."""
    doc = _json(path)
    chats = doc["chats"]["list"] if "chats" in doc else [doc]

    def text(value: str | list[Any]) -> str:
        if isinstance(value, str):
            return value
        return "".join(p if isinstance(p, str) else p["text"] for p in value)

    return [[text(m["text"]) for m in chat["messages"]] for chat in chats]


_WA_HEADER = re.compile(
    r"^\u200e?(?:\[\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4},? \d{1,2}:\d{2}(?::\d{2})?"
    r"(?: ?[AP]M| [ap]\.[ \u00a0]?m\.)?\] "
    r"|\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4},? \d{1,2}:\d{2}(?::\d{2})?\.?"
    r"(?: [ap]\.[ \u00a0]?m\.)? - )(?P<rest>.*)$")
_WA_MEDIA = re.compile(r"^\u200e?(?:<Media omitted>|image omitted)$")


def whatsapp_texts(path: Path) -> Texts:
    """A line starting with a date and time starts a message; the lines after it that
    do not are joined to it with "\\n" (multi-line messages). The text is what follows
    ``Name: `` (the whole line when no name: a notice). Documented transformation:
    a media placeholder ("image omitted", "<Media omitted>") becomes text ""."""
    lines = path.read_text("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    bodies: list[list[str]] = []
    for line in lines:
        header = _WA_HEADER.match(line)
        if header:
            bodies.append([header["rest"]])
        else:
            bodies[-1].append(line)
    out = []
    for body in bodies:
        rest = "\n".join(body)
        text = rest.split(": ", 1)[1] if ": " in rest else rest
        out.append("" if _WA_MEDIA.match(text) else text)
    return [out]


# -- the table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Corpus:
    path: str
    fmt: str
    conversations: int
    messages: int  # message records, system events included
    events: int  # of which system events
    participants: int  # participant records across conversations, named or not
    unnamed: int  # of which without a name
    emails: frozenset[str]
    phones: frozenset[str]
    unparsed: frozenset[str]  # digits of numbers that need a region
    texts: Callable[[Path], Texts]


NONE: frozenset[str] = frozenset()

CORPUS = [
    # 12 activities: conversationUpdate, 5 messages (2 cards, one a value with no text),
    # 6 traces; accounts User and Bot
    Corpus("botframework/addItemWithButton.transcript", "botframework", 1, 6, 1, 2, 0,
           NONE, NONE, NONE, botframework_texts),
    # 7 activities: conversationUpdate, a message with no 'from' (an event), 4 messages,
    # 1 typing; accounts Joe and LulaBot (Susan is only named inside texts)
    Corpus("botframework/cli.sample.transcript", "botframework", 1, 6, 2, 2, 0,
           NONE, NONE, NONE, botframework_texts),
    # 11 messages (one a photo without content); participants User 1, User 2
    Corpus("facebook_messenger/facebook_chat.json", "messenger", 1, 11, 0, 2, 0,
           NONE, NONE, NONE, messenger_texts),
    # description + 6 entries; requester 1101 (name "") and agent 510, unnamed; the
    # agent's last reply has from_email support@example.com
    Corpus("freshdesk_webchat/web_chat_ticket_with_conversations.json", "freshdesk",
           1, 7, 0, 2, 2, frozenset({"support@example.com"}), NONE, NONE, freshdesk_texts),
    # 13 messages; 4 listed participants plus the sender "❤️" who is not listed
    Corpus("instagram_messenger/testlog.json", "messenger", 1, 13, 0, 5, 0,
           NONE, NONE, NONE, messenger_texts),
    # source + 1 redacted part; the lead (no name, e-mail "") and admin John Doe
    Corpus("intercom/conversation_part_redacted.json", "intercom", 1, 2, 0, 2, 1,
           frozenset({"admin@example.com"}), NONE, NONE, intercom_texts),
    # 7 events: 2 user, 2 utter_ actions (events), 3 action_listen (no records);
    # sender mysender and the bot, neither named
    Corpus("rasa/tracker_moodbot.json", "rasa", 1, 4, 2, 2, 2,
           NONE, NONE, NONE, rasa_texts),
    # 3 channel-day files (lang-chat has none): 2 + 2 + 1 messages, one channel_join;
    # U0500003428 (not in users.json, named from user_profile) in each
    Corpus("slack/slack_export.zip", "slack", 3, 5, 1, 3, 0,
           NONE, NONE, NONE, slack_texts),
    # 4 messages from Jimmeny Marvelton and Batman & Robin
    Corpus("telegram/result.json", "telegram", 1, 4, 0, 2, 0,
           NONE, NONE, NONE, telegram_texts),
    # full-export shape, one chat, 2 messages (Author 1, Author 2)
    Corpus("telegram/test_batch_export.json", "telegram", 1, 2, 0, 2, 0,
           NONE, NONE, NONE, telegram_texts),
    # 29 lines, 23 start with a date (6 continue a message); notices: the encryption
    # notice, '+12 345 578 created group ...', 'You were added'; 6 authors, one the
    # number +12 345 578, which has too few digits to be a possible phone number
    Corpus("whatsapp/testlog.txt", "whatsapp", 1, 23, 3, 6, 0,
           NONE, NONE, frozenset({"12345578"}), whatsapp_texts),
    # 12 lines; the first is the chat's own encryption notice (written under the contact
    # name Dr. Feather, U+200E-marked); 3 "image omitted"; Dr. Feather, Jungle Jane
    Corpus("whatsapp/whatsapp_chat.txt", "whatsapp", 1, 12, 1, 2, 0,
           NONE, NONE, NONE, whatsapp_texts),
]


def test_the_table_covers_every_corpus_file_with_a_reader() -> None:
    root = corpus_file("SOURCES.md").parent
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    without_reader = {f for f in files if f.startswith(("irc/", "customer_service_datasets/"))}
    assert files - without_reader - {"SOURCES.md"} == {c.path for c in CORPUS}


@pytest.mark.parametrize("case", CORPUS, ids=[c.path for c in CORPUS])
def test_corpus_file(case: Corpus) -> None:
    path = corpus_file(case.path)
    convs, opts = read_all(path, case.fmt)
    assert opts.problems == []

    assert len(convs) == case.conversations
    msgs = [m for c in convs for m in c["messages"]]
    assert len(msgs) == case.messages
    assert sum(1 for m in msgs if m.get("system")) == case.events
    people = [p for c in convs for p in c["participants"]]
    assert len(people) == case.participants
    assert sum(1 for p in people if not p.get("name")) == case.unnamed

    ids = found(convs)
    assert set(ids.emails) == case.emails
    assert set(ids.phones) == case.phones
    assert set(ids.unparsed_phones) == case.unparsed

    # every text, per conversation in record order (conversations in any order)
    got = [[m["text"] for m in c["messages"]] for c in convs]
    expected = case.texts(path)
    assert sum(len(t) for t in expected) == case.messages  # the parser agrees on counts
    assert sorted(got) == sorted(expected)
