"""The benchmark's synthetic corpus: deterministic, prefix-stable, canonical JSONL.

Conversation ``i`` is built from its own random generator seeded with
``(seed, i)``, so the corpus of any size is a prefix of every larger one
with the same seed, and the same seed always gives the same bytes (the
smoke test holds both). What it looks like:

* 8 to 16 messages per conversation, between one customer, one agent and,
  in about a third of them, a bot that answers first;
* every customer has an e-mail address and a phone number (written in
  several forms) and comes back in about three conversations, whatever the
  corpus size (customers return among the last 40 to arrive), so a subject
  search has a few hits and the same few at every size;
* about 1 % of messages write an e-mail address or a phone number in their
  text (sometimes of the probe subject), about 3 % an order number (six
  or more digits, which look like a phone number to a cheap test), a few
  carry accented or Japanese text, and timestamps are canonical UTC;
* the probe subject (:func:`probe`) is customer 100, a customer like any
  other plus two early conversations of their own: what ``subject find``
  and ``rg`` look for.

Besides the JSONL: :func:`flatten` writes the same messages one per line
(what ``sqlite-utils insert --nl`` takes), and :func:`slack_export` writes a
Slack workspace export folder (users.json, channels.json, a folder per
channel, a file per day) of the same conversations.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

#: bump when the generator's output changes (cached corpora carry it in their name)
VERSION = 2

#: bytes of canonical JSONL per size name
SIZES = {"toy": 200_000, "tiny": 2_500_000, "small": 10_000_000,
         "medium": 100_000_000, "large": 500_000_000}

_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
#: the probe subject, and the early conversations that are surely theirs
_PROBE = 100
_PROBE_CONVERSATIONS = (7, 11)
#: a customer comes back among the last this many to arrive: three times on average
_WINDOW = 40
_FIRST = ("Mara", "Ines", "Jonas", "Aiko", "Chloé", "Zoë", "Rahul", "Fatima", "Liam",
          "Sofia", "Mateo", "Olga", "Kwame", "Hannah", "Yusuf", "Elena", "Noah", "Priya",
          "Björn", "Léa", "Tomás", "Mei", "Omar", "Ada")
_LAST = ("Quint", "Okafor", "Müller", "Tanaka", "García", "Novak", "Smith", "Haddad",
         "Lindqvist", "Rossi", "Dubois", "Kowalski", "Nguyen", "O'Brien", "Petrova",
         "Andersen", "Silva", "Cohen", "Yilmaz", "Fischer")
_DOMAINS = ("example.org", "example.com", "example.net", "mail.example", "post.example")
_AGENTS = ("Ines", "Karl", "Dana", "Priya", "Sam", "Noor", "Felix", "Maja")
_BOTS = ("ShopBot", "HelpBot")
_CHANNELS = ("web", "app", "whatsapp", "email")
_TAGS = ("billing", "delivery", "refund", "account", "technical", "complaint", "vip")
_OPENERS = ("Hi, I have a question about my order", "Hello, my parcel has not arrived",
            "Good morning, I was charged twice", "Hi there, I cannot log in to my account",
            "Hello, I would like to return an item", "Hey, the app keeps crashing",
            "Hi, can I change my delivery address?", "Bonjour, ma commande est en retard",
            "Hallo, ich möchte meine Bestellung stornieren")
_WORDS = ("the order was placed last week and I still have not received any update about "
          "delivery tracking number refund invoice payment card account password reset "
          "email address warehouse courier package damaged replacement size colour return "
          "label voucher discount subscription cancel renewal monthly plan upgrade phone "
          "support ticket escalate manager apologise inconvenience check system sorry "
          "thank you for waiting let me look into this for you one moment please could you "
          "confirm your details I can see that it was dispatched yesterday should arrive "
          "within three working days is there anything else I can help with today great "
          "that solved it perfect have a nice day").split()
_ACCENTED = ("Merci beaucoup, c'est très gentil", "Vielen Dank für die schnelle Hilfe",
             "¿Puede enviarme la factura?", "Tack så mycket för hjälpen")
_JAPANESE = ("注文した商品がまだ届いていません", "返品の手続きを教えてください",
             "ありがとうございました")


@dataclass(frozen=True)
class Person:
    """A customer of the synthetic shop: the same person in every conversation."""

    index: int
    name: str
    email: str
    phone_e164: str

    @property
    def phone_written(self) -> str:
        """The number as people write it: ``+44 7911 123456``."""
        digits = self.phone_e164[3:]
        return f"+44 {digits[:4]} {digits[4:]}"

    @property
    def phone_national(self) -> str:
        """The UK national form, ``07911 123456`` (needs the vault's region)."""
        digits = self.phone_e164[3:]
        return f"0{digits[:4]} {digits[4:]}"


def customer(index: int) -> Person:
    """Customer ``index``: name, e-mail and a UK mobile number, all derived from it."""
    rng = random.Random(f"customer:{index}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    plain = (first + "." + last).lower().replace("'", "")
    local = plain.encode("ascii", "ignore").decode() + f".{index}"
    phone = f"+447{700 + index // 1_000_000:03d}{index % 1_000_000:06d}"
    return Person(index, f"{first} {last}", f"{local}@{rng.choice(_DOMAINS)}", phone)


def probe() -> Person:
    """The subject every search measurement looks for."""
    return customer(_PROBE)


def _ts(seconds: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(4, 22))
    return " ".join(words).capitalize() + rng.choice((".", ".", "?", "!"))


def _recent(rng: random.Random, conv: int) -> int:
    """One of the last :data:`_WINDOW` customers to arrive (one every third conversation)."""
    return max(0, conv // 3 + _WINDOW - rng.randrange(_WINDOW))


def _mentioned(rng: random.Random, conv: int) -> Person:
    """Whose address a message quotes: a recent customer, the probe now and then early on."""
    if conv < 4000 and rng.random() < 0.01:
        return customer(_PROBE)
    return customer(_recent(rng, conv))


def _text(rng: random.Random, conv: int, index: int) -> str:
    roll = rng.random()
    if roll < 0.005:
        other = _mentioned(rng, conv)
        return f"Please send it to {other.email} instead, thanks"
    if roll < 0.010:
        other = _mentioned(rng, conv)
        form = other.phone_written if rng.random() < 0.5 else other.phone_national
        return f"You can call me back on {form} after 5pm"
    if roll < 0.040:
        return f"My order number is {rng.randrange(10**7, 10**9)}, {_sentence(rng).lower()}"
    if roll < 0.050:
        return rng.choice(_ACCENTED)
    if roll < 0.053:
        return rng.choice(_JAPANESE)
    if index == 0:
        return rng.choice(_OPENERS) + ". " + _sentence(rng)
    return " ".join(_sentence(rng) for _ in range(rng.choice((1, 1, 2))))


def conversation(index: int, seed: int = 1) -> dict[str, Any]:
    """Conversation ``index`` of the corpus with ``seed`` (always the same dict)."""
    rng = random.Random(f"{seed}:{index}")
    person = customer(_PROBE if index in _PROBE_CONVERSATIONS else _recent(rng, index))
    agent = rng.choice(_AGENTS)
    with_bot = rng.random() < 0.33
    start = _EPOCH + index * 97 + rng.randrange(60)
    people = [{"id": "c", "role": "customer", "name": person.name, "email": person.email,
               "phone": person.phone_written if rng.random() < 0.7 else person.phone_e164,
               "customer_id": f"cust-{person.index}"},
              {"id": "a", "role": "agent", "name": agent}]
    if with_bot:
        people.append({"id": "b", "role": "bot", "name": rng.choice(_BOTS)})
    messages = []
    at = start
    for n in range(rng.randint(8, 16)):
        if n == 0:
            sender = "c"
        elif with_bot and n < 3:
            sender = "b" if n == 1 else "c"
        else:
            sender = "c" if rng.random() < 0.5 else "a"
        msg: dict[str, Any] = {"id": f"m{n + 1}", "at": _ts(at), "from": sender,
                               "text": _text(rng, index, n),
                               "direction": "inbound" if sender == "c" else "outbound"}
        if sender == "b":
            msg["bot"] = True
        messages.append(msg)
        at += rng.randint(5, 240)
    conv = {"conversation_id": f"conv-{seed}-{index:08d}", "source": "bench",
            "platform": "jsonl", "started_at": _ts(start), "ended_at": _ts(at),
            "status": "closed", "channel": rng.choice(_CHANNELS),
            "tags": sorted(set(rng.choices(_TAGS, k=rng.randint(0, 2)))),
            "customer_id": f"cust-{person.index}", "participants": people,
            "messages": messages}
    if not conv["tags"]:
        del conv["tags"]
    return conv


@dataclass
class CorpusInfo:
    """What a generated corpus holds (also written beside it as ``.info.json``)."""

    path: str
    seed: int
    bytes: int
    conversations: int
    messages: int
    version: int = VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lines(target_bytes: int, seed: int = 1) -> Iterator[tuple[bytes, int]]:
    """(canonical line with newline, message count) until ``target_bytes`` are reached."""
    total = index = 0
    while total < target_bytes:
        conv = conversation(index, seed)
        line = orjson.dumps(conv, option=orjson.OPT_SORT_KEYS) + b"\n"
        total += len(line)
        index += 1
        yield line, len(conv["messages"])


def write_corpus(path: Path, target_bytes: int, seed: int = 1) -> CorpusInfo:
    """Write the corpus of about ``target_bytes`` (whole lines) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    convs = msgs = size = 0
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        for line, count in lines(target_bytes, seed):
            fh.write(line)
            convs, msgs, size = convs + 1, msgs + count, size + len(line)
    tmp.replace(path)
    info = CorpusInfo(str(path), seed, size, convs, msgs)
    path.with_name(path.name + ".info.json").write_text(json.dumps(info.as_dict()) + "\n")
    return info


def cached_corpus(folder: Path, size: str, seed: int = 1) -> CorpusInfo:
    """The corpus of a named size in ``folder``, generated once and reused."""
    path = (folder / f"corpus-{size}-s{seed}-v{VERSION}.jsonl").resolve()
    info_file = path.with_name(path.name + ".info.json")
    if path.is_file() and info_file.is_file():
        info = CorpusInfo(**json.loads(info_file.read_text()))
        if info.bytes == path.stat().st_size:
            info.path = str(path)  # where it is now, whoever made it
            return info
    return write_corpus(path, SIZES[size], seed)


def read_corpus(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for line in fh:
            yield orjson.loads(line)


def flatten(corpus: Path, out: Path) -> int:
    """One JSON object per message (what sqlite-utils is given); returns the count."""
    count = 0
    with open(out, "wb") as fh:
        for conv in read_corpus(corpus):
            cid = conv["conversation_id"]
            for pos, m in enumerate(conv["messages"]):
                row = {"conversation_id": cid, "position": pos, "message_id": m["id"],
                       "at": m["at"], "sender": m["from"], "text": m["text"],
                       "direction": m.get("direction")}
                fh.write(orjson.dumps(row) + b"\n")
                count += 1
    return count


# -- a Slack workspace export of the same conversations ---------------------------------

def _epoch(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def slack_export(corpus: Path, folder: Path, target_bytes: int) -> dict[str, int]:
    """A Slack export folder of the corpus's first conversations, about ``target_bytes``.

    Each conversation goes to one of 40 channels, on the day it started (the
    Slack reader makes one conversation per channel and day, so a few merge).
    Customers are users with their e-mail and phone in ``profile``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    users: dict[str, dict[str, Any]] = {}
    days: dict[tuple[str, str], list[dict[str, Any]]] = {}
    size = messages = 0
    for n, conv in enumerate(read_corpus(corpus)):
        if size >= target_bytes:
            break
        channel = f"support-{n % 40:02d}"
        ids = {p["id"]: _slack_user(p, conv, users) for p in conv["participants"]}
        day = conv["started_at"][:10]
        bucket = days.setdefault((channel, day), [])
        for m in conv["messages"]:
            ts = f"{_epoch(m['at'])}.{n % 1_000_000:06d}"
            item = {"type": "message", "user": ids[m["from"]], "text": m["text"], "ts": ts,
                    "client_msg_id": f"{conv['conversation_id']}-{m['id']}",
                    "team": "T0BENCH", "blocks": [{"type": "rich_text", "elements": [
                        {"type": "rich_text_section",
                         "elements": [{"type": "text", "text": m["text"]}]}]}]}
            bucket.append(item)
            size += len(orjson.dumps(item)) + 2
            messages += 1
    for (channel, day), items in days.items():
        (folder / channel).mkdir(exist_ok=True)
        (folder / channel / f"{day}.json").write_bytes(orjson.dumps(items))
    channels = [{"id": f"C{i:08d}", "name": f"support-{i:02d}", "created": _EPOCH,
                 "members": []} for i in range(40)]
    (folder / "channels.json").write_bytes(orjson.dumps(channels))
    (folder / "users.json").write_bytes(orjson.dumps(list(users.values())))
    total = sum(p.stat().st_size for p in folder.rglob("*.json"))
    return {"bytes": total, "messages": messages, "day_files": len(days)}


def _slack_user(p: dict[str, Any], conv: dict[str, Any],
                users: dict[str, dict[str, Any]]) -> str:
    if p["role"] == "customer":
        uid = f"U{conv['customer_id'].split('-')[1]:0>9}"
        profile = {"real_name": p["name"], "email": p["email"], "phone": p["phone"]}
    else:
        uid = f"U{p['role'][0].upper()}{p['name'].upper():0>8}"
        profile = {"real_name": p["name"]}
    if uid not in users:
        users[uid] = {"id": uid, "name": p["name"].lower().replace(" ", "."),
                      "real_name": p["name"], "is_bot": p["role"] == "bot",
                      "profile": profile}
    return uid
