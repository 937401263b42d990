"""The fast path of record validation against the precise one: never a different answer.

:func:`vault.recordschema.check_line` may decline a line (None: the precise
path decides), but when it vouches for one, the precise path must accept
that very line, unchanged, with the same summary. These tests generate
records valid and invalid, written canonically and not, and compare.
"""

from __future__ import annotations

import copy
import datetime
import enum
import json
import sys
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, REPO
from vault import canonical, recordschema, records, sources, timestamps
from vault.errors import InvalidRecord


def precise(line: bytes) -> tuple[bytes, records.Summary] | str:
    try:
        return records.precise_line(line, "x")
    except InvalidRecord as exc:
        return f"InvalidRecord: {exc}"


def assert_agree(line: bytes) -> records.Summary | None:
    """The property itself; returns what the fast path said."""
    fast = recordschema.check_line(line)
    reference = precise(line)
    if fast is not None:
        assert reference == (line, fast), line
    public: tuple[bytes, records.Summary] | str
    try:
        public = records.canonical_line(line, "x")
    except InvalidRecord as exc:
        public = f"InvalidRecord: {exc}"
    assert public == reference
    return fast


# -- generated records ------------------------------------------------------------------

LEAF = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6))
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
STAMPS = st.sampled_from([
    "2024-03-14T09:05:12Z", "2024-03-14T09:05:12.25Z", "2024-03-14T09:05:12.123456Z",
    "2024-03-14T09:05:12.250Z", "2024-03-14T09:05:12.250000Z", "2024-03-14T10:05:12+01:00",
    "2024-03-14T09:05:12+00:00", "2024-03-14 09:05:12Z", "2024-03-14T09:05:12",
    "2024-03-14t09:05:12z", "2024-13-45T99:99:99Z", "٢٠٢٤-03-14T09:05:12Z",
    "2024-03-14T09:05:12Z\n", "not a time", "", "1999-12-31T23:59:59Z"])
TEXT = st.text(max_size=12) | st.sampled_from(["", "a\u2028b", "\x00\x1f\x7f", "é\u0301"])
IDS = st.text(min_size=0, max_size=4) | st.sampled_from(["p1", "p2", "m1", "x" * 1025])


def maybe(value: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = JSON
          ) -> st.SearchStrategy[Any]:
    """Mostly a fitting value, sometimes anything at all."""
    return st.one_of(value, value, value, wrong)


@st.composite
def attachment(draw: st.DrawFn) -> Any:
    out = draw(st.fixed_dictionaries({}, optional={
        "sha256": maybe(st.sampled_from(["ab" * 32, "AB" * 32, "ab" * 31, None])),
        "size": maybe(st.integers(-1, 2**64) | st.none() | st.booleans()),
        "name": maybe(TEXT), "type": maybe(TEXT), "text": maybe(TEXT),
        "omitted": maybe(st.booleans()), "url": maybe(TEXT), "other": JSON}))
    return out if draw(st.integers(0, 9)) else draw(JSON)


@st.composite
def conversation(draw: st.DrawFn) -> Any:
    people = draw(st.lists(st.fixed_dictionaries(
        {"id": maybe(st.sampled_from(["p1", "p2", "p3"]) | IDS),
         "role": maybe(st.sampled_from(["customer", "agent", "bot", "system", "boss"]))},
        optional={"name": maybe(TEXT | st.none()), "email": maybe(TEXT | st.none()),
                  "phone": maybe(TEXT | st.none()), "customer_id": maybe(TEXT | st.none()),
                  "extra": JSON, "platform_ids": JSON, "session": JSON, "odd": JSON}),
        max_size=3))
    pids = [p["id"] for p in people if isinstance(p.get("id"), str)] or ["p1"]
    messages = draw(st.lists(st.fixed_dictionaries(
        {"id": maybe(st.sampled_from(["m1", "m2", "m3", "m4"]) | IDS),
         "at": maybe(STAMPS),
         "from": maybe(st.sampled_from(pids + [None, "ghost"])),
         "text": maybe(TEXT)},
        optional={"direction": maybe(st.sampled_from(["inbound", "outbound", "internal",
                                                      "sideways", None])),
                  "visibility": maybe(st.sampled_from(["public", "private", None])),
                  "edited_at": maybe(STAMPS | st.none()), "bot": maybe(st.booleans()),
                  "system": maybe(st.booleans()), "content_type": maybe(TEXT),
                  "attachments": maybe(st.lists(attachment(), max_size=2) | st.none()),
                  "extra": JSON, "reply_to": maybe(TEXT), "at_offset": maybe(TEXT),
                  "unknown": JSON}),
        max_size=4))
    conv = draw(st.fixed_dictionaries(
        {"conversation_id": maybe(st.sampled_from(["c-1", "c-2"]) | IDS),
         "started_at": maybe(STAMPS)},
        optional={"source": maybe(TEXT | st.none()), "ended_at": maybe(STAMPS | st.none()),
                  "updated_at": maybe(STAMPS | st.none()), "tags": maybe(st.lists(TEXT)),
                  "platform": maybe(TEXT), "status": maybe(TEXT), "title": maybe(TEXT),
                  "channel": maybe(TEXT), "customer_id": maybe(TEXT), "extra": JSON,
                  "started_at_offset": maybe(TEXT), "surprise": JSON}))
    conv["participants"], conv["messages"] = people, messages
    for key in draw(st.lists(st.sampled_from(["participants", "messages", "started_at",
                                              "conversation_id"]), max_size=1)):
        del conv[key]
    return conv


def written(value: Any, how: str) -> bytes | None:
    """``value`` as a JSON line, in one of several byte forms."""
    try:
        if how == "canonical":
            return canonical.dumps(value)
        if how == "unsorted":
            return orjson.dumps(value)
        if how == "ascii":
            return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    except (TypeError, ValueError, canonical.CanonicalError):
        return None  # not representable (integers beyond 64 bits for orjson)


FORMS = st.sampled_from(["canonical", "canonical", "unsorted", "ascii", "spaced"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation(), FORMS)
def test_fast_path_never_disagrees_with_the_precise_one(conv: Any, how: str) -> None:
    line = written(conv, how)
    if line is not None:
        assert_agree(line)


@settings(max_examples=300, deadline=None)
@given(conversation(), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_damaged_lines_agree_too(conv: Any, at: int, junk: bytes) -> None:
    """Bytes changed anywhere: broken JSON, escapes, surrogates, truncation."""
    line = written(conv, "canonical")
    if line is None:
        return
    at %= len(line) + 1
    assert_agree(line[:at] + junk + line[at + len(junk):])
    assert_agree(line[:at])


@pytest.mark.parametrize("line", [
    b'{"conversation_id":"c","messages":[],"participants":[],"started_at":"2024-01-01T00:00:00Z",'
    b'"tags":["\\ud800"]}',
    b'{"conversation_id":"c","extra":{"n":18446744073709551616},"messages":[],'
    b'"participants":[],"started_at":"2024-01-01T00:00:00Z"}',
    b'{"conversation_id":"c","extra":{"b":1,"a":2},"messages":[],"participants":[],'
    b'"started_at":"2024-01-01T00:00:00Z"}',
    b'{"conversation_id":"c","conversation_id":"d","messages":[],"participants":[],'
    b'"started_at":"2024-01-01T00:00:00Z"}',
    b'{"conversation_id":"c","messages":[],"participants":[],"started_at":"2024-01-01T00:00:00Z",'
    b'"ended_at":null}',
    b'{"conversation_id":"c","extra":1.0e2,"messages":[],"participants":[],'
    b'"started_at":"2024-01-01T00:00:00Z"}',
])
def test_tricky_lines(line: bytes) -> None:
    """Lines msgspec and orjson could read differently: never vouched for, same answer."""
    assert assert_agree(line) is None


# -- records built in memory (readers): records.validate ---------------------------------

class Role(str, enum.Enum):
    CUSTOMER = "customer"


class Plain(enum.Enum):
    CUSTOMER = "customer"


class Text(str):
    pass


def _first(items: Any, key: str, value: Any) -> None:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        items[0][key] = value


ODDITIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "none": lambda c: None,
    "participants tuple": lambda c: c.update(participants=tuple(c.get("participants", ()))),
    "messages tuple": lambda c: c.update(messages=tuple(c.get("messages", ()))),
    "role str enum": lambda c: _first(c.get("participants"), "role", Role.CUSTOMER),
    "role plain enum": lambda c: _first(c.get("participants"), "role", Plain.CUSTOMER),
    "id str subclass": lambda c: _first(c.get("messages"), "id", Text("m9")),
    "id uuid": lambda c: _first(c.get("messages"), "id", uuid.UUID(int=7)),
    "at datetime": lambda c: _first(c.get("messages"), "at", datetime.datetime(2024, 1, 1)),
    "sender bytes": lambda c: _first(c.get("messages"), "from", b"p1"),
    "cid subclass": lambda c: c.update(conversation_id=Text("c-9")),
    "tags set": lambda c: c.update(tags={"a", "b"}),
    "ordered dict": lambda c: c.update(participants=[OrderedDict(p) if isinstance(p, dict)
                                                     else p for p in c.get("participants", [])]),
}


def validated(conv: Any, check: Callable[[Any, str], records.Summary]) -> tuple[Any, Any]:
    mine = copy.deepcopy(conv)
    try:
        return check(mine, "x"), mine
    except InvalidRecord as exc:
        return f"InvalidRecord: {exc}", mine


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation(), st.sampled_from(sorted(ODDITIES)))
def test_fast_dict_path_never_disagrees_with_the_precise_one(conv: Any, oddity: str) -> None:
    """Same summary or error, and the record left in the same state, whatever it holds."""
    ODDITIES[oddity](conv)
    fast = recordschema.check_dict(copy.deepcopy(conv))
    reference = validated(conv, records.validate_precise)
    assert validated(conv, records.validate) == reference
    if fast is not None:
        assert reference == (fast, conv)  # accepted, and nothing to canonicalise


# -- the fast path does take the common case ------------------------------------------

@st.composite
def plain_conversation(draw: st.DrawFn) -> dict[str, Any]:
    """Valid records of the common shape: what the exporter writes."""
    n = draw(st.integers(1, 3))
    people = [{"id": f"p{i}", "role": draw(st.sampled_from(records.ROLES)),
               "name": draw(TEXT), "email": draw(TEXT | st.none())} for i in range(n)]
    stamp = st.sampled_from(["2024-03-14T09:05:12Z", "2024-03-14T09:05:12.5Z",
                             "2023-12-31T23:59:59.123456Z"])
    messages = [{"id": f"m{i}", "at": draw(stamp), "text": draw(TEXT),
                 "from": draw(st.sampled_from([p["id"] for p in people] + [None])),
                 "direction": draw(st.sampled_from(records.DIRECTIONS))}
                for i in range(draw(st.integers(0, 5)))]
    conv: dict[str, Any] = {"conversation_id": draw(IDS.filter(lambda s: 0 < len(s) < 9)),
                            "started_at": draw(stamp), "participants": people,
                            "messages": messages}
    conv.update(draw(st.fixed_dictionaries({}, optional={
        "extra": JSON, "tags": st.lists(TEXT, max_size=2) | JSON, "source": TEXT})))
    if draw(st.booleans()) and messages:
        messages[0]["attachments"] = [{"sha256": "cd" * 32, "size": 3, "name": "a.png"}]
    return conv


@settings(max_examples=300, deadline=None)
@given(plain_conversation())
def test_canonical_valid_records_take_the_fast_path(conv: dict[str, Any]) -> None:
    line = written(conv, "canonical")
    if line is None:
        return
    summary = assert_agree(line)
    reference = precise(line)
    assert isinstance(reference, tuple)
    assert summary == reference[1]


@settings(max_examples=200, deadline=None)
@given(plain_conversation())
def test_plain_records_in_memory_take_the_fast_path(conv: dict[str, Any]) -> None:
    for m in conv["messages"]:
        m.pop("attachments", None)  # left to the precise path in memory
    assert recordschema.check_dict(conv) == records.validate_precise(copy.deepcopy(conv))


def test_samples_and_corpus_records_agree() -> None:
    """The shipped sample and every reader's output: same bytes and summaries."""
    lines = (REPO / "vault" / "samples" / "conversations.jsonl").read_bytes().splitlines()
    for fmt, path in [("slack", CORPUS / "slack/slack_export.zip"),
                      ("telegram", CORPUS / "telegram"), ("whatsapp", CORPUS / "whatsapp")]:
        if path.exists():
            lines += [canonical.dumps(c) for c in sources.read(
                path, fmt, sources.ReadOptions(source=fmt, timezone="Europe/London"))]
    taken = [assert_agree(line) for line in lines if line.strip()]
    assert any(s is not None for s in taken)


def test_bench_corpus_is_all_fast() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_corpus

    for line, _ in bench_corpus.lines(60_000):
        assert assert_agree(line.rstrip(b"\n")) is not None


# -- the two facts the proof rests on -------------------------------------------------

def test_msgspec_writes_every_string_as_orjson_does() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert recordschema._encode(every) == orjson.dumps(every)


def test_schemas_declare_fields_in_canonical_order() -> None:
    def walk(kind: Any, seen: set[Any]) -> None:
        if kind in seen or not hasattr(kind, "__struct_fields__"):
            return
        seen.add(kind)
        names = list(kind.__struct_encode_fields__)
        assert names == sorted(names), kind
        for hint in kind.__annotations__.values():
            for arg in getattr(hint, "__args__", ()):
                for inner in getattr(arg, "__args__", ()) + (arg,):
                    walk(inner, seen)
    for schema in (recordschema.LeanConversation, recordschema.Conversation):
        walk(schema, set())


@given(st.lists(STAMPS | st.text(max_size=22), max_size=6))
def test_timestamp_check_is_never_looser_than_the_canonical_form(stamps: list[str]) -> None:
    if recordschema._all_plain(stamps):
        assert all(timestamps.is_canonical(s) for s in stamps)
    if all(recordschema._PLAIN_TS(s) and timestamps.is_canonical(s) for s in stamps):
        assert recordschema._all_plain(stamps)


def test_timestamp_check_pins_each_item() -> None:
    """Lengths that add up but split differently are refused."""
    good = "2024-03-14T09:05:12Z"
    assert recordschema._all_plain([good, good])
    assert not recordschema._all_plain([good[:-1], "Z" + good])
    assert not recordschema._all_plain([good + "|" + good[:-1]])


def test_precise_path_reached_for_what_needs_changing(tmp_path: Path) -> None:
    """A line with an offset is canonicalised (by the precise path), not passed through."""
    conv = {"conversation_id": "c", "started_at": "2024-03-14T10:05:12+01:00",
            "participants": [], "messages": []}
    line = json.dumps(conv).encode()
    assert recordschema.check_line(line) is None
    data, summary = records.canonical_line(line, "x")
    assert orjson.loads(data)["started_at"] == "2024-03-14T09:05:12Z"
    assert orjson.loads(data)["started_at_offset"] == "+01:00"


@pytest.mark.parametrize("ats", [["2024-05-05T10:00:00Z", "2024-05-05T10:00:00.5Z"],
                                 ["2024-05-05T10:00:00.5Z", "2024-05-05T10:00:00Z"],
                                 ["2024-05-05T10:00:00.12Z", "2024-05-05T10:00:00.123Z",
                                  "2024-05-05T09:59:59.999999Z"]])
def test_first_and_last_are_in_time_order_not_text_order(ats: list[str]) -> None:
    conv = {"conversation_id": "c", "started_at": ats[0],
            "participants": [{"id": "p", "role": "customer"}],
            "messages": [{"id": f"m{i}", "at": at, "text": "t", "from": "p",
                          "direction": "inbound"} for i, at in enumerate(ats)]}
    line = canonical.dumps(conv)
    moments = sorted(ats, key=timestamps.parse)
    for summary in (recordschema.check_line(line), records.precise_line(line, "x")[1]):
        assert summary is not None
        assert (summary.first_at, summary.last_at) == (moments[0], moments[-1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime.datetime(1, 1, 2),
                             max_value=datetime.datetime(9999, 12, 30),
                             timezones=st.just(datetime.timezone.utc)), min_size=2, max_size=6))
def test_order_key_sorts_canonical_times_as_times(moments: list[datetime.datetime]) -> None:
    texts = [timestamps.format_utc(m) for m in moments]
    assert sorted(texts, key=timestamps.order_key) == [timestamps.format_utc(m)
                                                       for m in sorted(moments)]
