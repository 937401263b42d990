"""What a record may say, decided once: at seal, at read, at ingest (a hostile trial).

A timestamp is valid exactly when :func:`vault.timestamps.parse` takes it,
and every layer asks that one question; a bundle holds each conversation
once and only conversations of the source its header names; canonical
JSONL has each key once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Pair
from export_kit import conv as export_conv
from export_kit import make_site, open_bundle, write_jsonl
from vault import bundle, bundleids, canonical, recordschema, records, timestamps, upsert
from vault.errors import InvalidRecord
from vault_kit import conv

OUT_OF_RANGE = ["0000-01-01T00:00:00Z", "9999-12-31T23:59:60Z", "2024-06-30T23:59:60Z",
                "2023-02-29T10:00:00Z", "2024-04-31T10:00:00Z", "2024-13-01T00:00:00Z",
                "2024-01-01T24:00:00Z", "9999-12-31T23:00:00-05:00",
                "0001-01-01T00:30:00+01:00"]


def _line(started_at: str, **extra: Any) -> bytes:
    return orjson.dumps({"conversation_id": "c1", "messages": [], "participants": [],
                         "started_at": started_at, **extra}, option=orjson.OPT_SORT_KEYS)


def _parses(text: str) -> bool:
    try:
        timestamps.parse(text)
    except timestamps.TimestampError:
        return False
    return True


def _accepted(line: bytes) -> bool:
    try:
        records.precise_line(line, "x")
    except InvalidRecord:
        return False
    return True


def _seal(pair: Pair, path: Path, source: str = "web") -> bundle.Sealed:
    return bundle.seal_jsonl(path, path.with_suffix(".cvb"), pair.exporter.identity(),
                             [pair.vault.public()], source=source, sequence=1)


# -- one definition of a valid timestamp ------------------------------------------------

@st.composite
def near_stamps(draw: st.DrawFn) -> str:
    """Strings shaped like timestamps, every field drawn past its range too."""
    year = draw(st.sampled_from([0, 1, 2, 1999, 2024, 2023, 2100, 9998, 9999]))
    parts = (f"{year:04d}-{draw(st.integers(0, 13)):02d}-{draw(st.integers(0, 32)):02d}"
             f"{draw(st.sampled_from(['T', 't', ' ']))}{draw(st.integers(0, 25)):02d}:"
             f"{draw(st.integers(0, 61)):02d}:{draw(st.integers(0, 61)):02d}")
    parts += draw(st.sampled_from(["", ".5", ".25", ".000001", ".1234567", ".0"]))
    return parts + draw(st.sampled_from(["Z", "z", "+00:00", "+01:00", "-05:00", "+14:00",
                                         "-23:59", ""]))


@settings(max_examples=1500, deadline=None)
@given(near_stamps() | st.text(max_size=26))
def test_records_accept_exactly_the_timestamps_parse_accepts(text: str) -> None:
    line = _line(text)
    assert _accepted(line) == _parses(text), text
    fast = recordschema.check_line(line)
    if fast is not None:
        assert _parses(text), text
    if _accepted(line):
        data, _ = records.precise_line(line, "x")
        stored = orjson.loads(data)["started_at"]
        # what the store computes from it (upsert._latest) can no longer fail
        assert timestamps.is_canonical(stored) and upsert._latest(stored, stored) == stored


@settings(max_examples=800, deadline=None)
@given(st.lists(near_stamps().map(lambda s: s[:10] + "T" + s[11:19] + "Z"), min_size=1,
                max_size=30))
def test_fast_timestamp_check_is_the_canonical_check(stamps: list[str]) -> None:
    """The arithmetic check over a whole conversation says what is_canonical says of each."""
    assert recordschema._all_plain(stamps) == all(map(timestamps.is_canonical, stamps))


@pytest.mark.parametrize("stamp", OUT_OF_RANGE)
def test_seal_refuses_what_ingest_could_not_store(pair: Pair, tmp_path: Path,
                                                  stamp: str) -> None:
    good = conv("c0", ["hello"])
    bad = conv("c1", ["hello"], at="2024-03-14T09:05:12Z")
    bad["started_at"] = stamp
    path = tmp_path / "in.jsonl"
    path.write_bytes(canonical.dumps(good) + b"\n" + canonical.dumps(bad) + b"\n")

    with pytest.raises(InvalidRecord, match=r"in\.jsonl: line 2: field 'started_at'"):
        _seal(pair, path)
    assert not path.with_suffix(".cvb").exists()


def test_offsets_that_leave_the_calendar_are_refused_not_crashed() -> None:
    for text in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"):
        with pytest.raises(timestamps.TimestampError, match="0001..9999"):
            timestamps.canonicalize(text)


# -- each conversation once, each key once, the header's source ---------------------------

def test_seal_refuses_a_conversation_id_twice(pair: Pair, tmp_path: Path) -> None:
    line = canonical.dumps(conv("c1", ["hello"]))
    path = tmp_path / "in.jsonl"
    path.write_bytes(line + b"\n\n" + line + b"\n")

    with pytest.raises(InvalidRecord, match=r"line 3: field 'conversation_id': the same id "
                                            r"as line 1"):
        _seal(pair, path)
    assert not path.with_suffix(".cvb").exists()


def test_seal_refuses_a_repeated_key_with_its_line(pair: Pair, tmp_path: Path) -> None:
    text = canonical.dumps(conv("c1", ["hello"])).decode()
    path = tmp_path / "in.jsonl"
    path.write_text(text + "\n" + text.replace('{"conversation_id":"c1"',
                                               '{"conversation_id":"c2","conversation_id":"c3"'
                                               ) + "\n")

    with pytest.raises(InvalidRecord, match=r"line 2: key 'conversation_id' appears twice"):
        _seal(pair, path)


def test_a_repeated_key_deep_inside_is_refused_too() -> None:
    line = _line("2024-03-14T09:05:12Z", extra={"a": 1}).replace(b'{"a":1}',
                                                                  b'{"a":1,"a":2}')
    assert recordschema.check_line(line) is None
    with pytest.raises(InvalidRecord, match="key 'a' appears twice"):
        records.canonical_line(line, "x")


def test_seal_refuses_a_record_of_another_source(pair: Pair, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(canonical.dumps(conv("c1", ["hi"], source="web"))
                     + b"\n" + canonical.dumps(conv("c2", ["hi"], source="shop")) + b"\n")

    with pytest.raises(InvalidRecord, match=r"line 2: field 'source': 'shop', but the bundle "
                                            r"is sealed for source 'web'"):
        _seal(pair, path)
    path.write_bytes(canonical.dumps(conv("c1", ["hi"], source="web")) + b"\n"
                     + canonical.dumps(conv("c2", ["hi"])) + b"\n")
    assert _seal(pair, path).meta["counts"]["conversations"] == 2


def test_export_run_seals_the_last_of_two_conversations_of_one_id(tmp_path: Path,
                                                                  cli) -> None:
    """Two conversations of one id in an export: one conversation, the later version."""
    first, later = export_conv("c1", ["hello"]), export_conv("c1", ["hello", "and more"])
    site = make_site(tmp_path, convs=[first, export_conv("c2", ["hi"]), later])

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.out
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000001.cvb")
    assert sorted(r["conversation_id"] for r in rows) == ["c1", "c2"]
    [c1] = [r for r in rows if r["conversation_id"] == "c1"]
    assert len(c1["messages"]) == 2


def test_export_run_files_records_naming_another_source_under_its_own(tmp_path: Path,
                                                                      cli) -> None:
    """The configured source name wins; the name the export carried is kept in extra."""
    site = make_site(tmp_path)
    write_jsonl(site.source, [export_conv("c1", ["hi"]),
                              {**export_conv("c2", ["hi"]), "source": "shop"}])

    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.out
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000001.cvb")
    by_id = {r["conversation_id"]: r for r in rows}
    assert sorted(by_id) == ["c1", "c2"]
    assert by_id["c2"]["source"] == "web"
    assert by_id["c2"]["extra"]["source_in_export"] == "shop"
    assert by_id["c1"]["source"] == "web" and "source_in_export" not in by_id[
        "c1"].get("extra", {})


def test_the_id_ledger_names_the_earliest_repeat() -> None:
    ledger = bundleids.IdLedger()
    for position, cid in enumerate(["a", "b", "c", "b", "a", "c"], 1):
        ledger.add(cid, position)
    assert ledger.repeat() == (2, 4)  # b repeats first, at position 4
    clean = bundleids.IdLedger()
    for position in range(1, 5001):
        clean.add(f"conv-{position}", position)
    assert clean.repeat() is None
    assert bundleids.IdLedger().repeat() is None
