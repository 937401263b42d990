"""vault.redaction: identifiers found in any string however written, and the record walk."""

from __future__ import annotations

from typing import Any

import pytest

from vault import redaction

E164 = "+447700900123"


def _found(text: str, **kw: Any) -> list[tuple[str, str, str]]:
    return [(s.kind, s.value, text[s.start:s.end])
            for s in redaction.find(text, "GB", **kw)]


@pytest.mark.parametrize("text,written", [
    ("mailto:Ana.Example@Example.org", "Ana.Example@Example.org"),
    ("https://x.example/?u=ana.example%40example.org&a=1", "ana.example%40example.org"),
    ("https://x.example/?u=ana.example%2540example.org", "ana.example%2540example.org"),
    ("<p>&#97;na.example&#64;example.org</p>", "&#97;na.example&#64;example.org"),
    ("ana.example&commat;example&period;org!", "ana.example&commat;example&period;org"),
    ("ANA.EXAMPLE&#x40;EXAMPLE.ORG", "ANA.EXAMPLE&#x40;EXAMPLE.ORG"),
])
def test_an_address_is_found_in_each_encoding(text: str, written: str) -> None:
    assert _found(text) == [("email", "ana.example@example.org", written)]


@pytest.mark.parametrize("text,written", [
    ("tel:%2B44%207700%20900123", "%2B44%207700%20900123"),
    ("call +44 (0) 7700 900123 now", "+44 (0) 7700 900123"),
    ("07700-900-123", "07700-900-123"),
])
def test_a_number_is_found_in_each_form(text: str, written: str) -> None:
    assert _found(text) == [("phone", E164, written)]


def test_digits_glued_to_letters_only_with_loose() -> None:
    text = "ref07700900123x"
    assert _found(text) == []
    # the digits as written (never parsed): a number is tombstoned under each of
    # its digit forms too
    assert _found(text, loose=True) == [("phone_unparsed", "07700900123", "07700900123")]
    assert _found("x004477009001239", loose=True) == [
        ("phone_unparsed", "4477009001239", "004477009001239")]


def test_timestamps_and_hashes_are_skipped_and_nothing_is_invented() -> None:
    for text in ("2024-03-14T09:05:12Z", "a" * 64, "Order 1234 of 2024-03-14", "", "hi"):
        assert redaction.find(text, "GB", loose=True) == [], text
    assert not redaction.may_hold("2024-03-14T09:05:12.123456+01:00")


def test_rewrite_returns_the_same_objects_where_nothing_changes() -> None:
    record = {"a": ["x", {"b": "keep"}], "c": {"d": "change me"}}
    out = redaction.rewrite(record, lambda s, path: s.replace("change me", "done"))
    assert out == {"a": ["x", {"b": "keep"}], "c": {"d": "done"}}
    assert out is not record and out["a"] is record["a"] and out["c"] is not record["c"]
    assert redaction.rewrite(record, lambda s, path: s) is record


def test_rewrite_reaches_keys_and_keeps_colliding_ones() -> None:
    record = {"extra": {"ana@example.org": 1, "[x]": 2, "bob@example.org": 3}}
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def fn(s: str, path: tuple[Any, ...]) -> str:
        seen.append((s, path))
        return "[x]" if "@" in s else s

    out = redaction.rewrite(record, fn)
    assert out == {"extra": {"[x]": 1, "[x] (2)": 2, "[x] (3)": 3}}
    assert ("ana@example.org", ("extra",)) in seen


def test_strings_walks_every_depth_with_paths() -> None:
    record = {"m": [{"t": "one", "x": {"k": ["two"]}}], "n": 5}
    assert list(redaction.strings(record)) == [
        ("m", ()), ("t", ("m", 0)), ("one", ("m", 0, "t")), ("x", ("m", 0)),
        ("k", ("m", 0, "x")), ("two", ("m", 0, "x", "k", 0)), ("n", ())]


def test_an_address_in_a_url_query_is_taken_apart_from_it() -> None:
    assert _found("see https://x.example/find?a=1&u=ana@example.org") == [
        ("email", "ana@example.org", "ana@example.org")]
    # without a URL around it, an address with = in it is left whole
    assert _found("SRS0=ab=cd@example.org") == [
        ("email", "srs0=ab=cd@example.org", "SRS0=ab=cd@example.org")]


def test_candidates_are_cheap_over_inclusive_and_stop_at_nul() -> None:
    found = set(redaction.candidates("chat:ana@example.org\x00c1\x00+44 (0) 7700 900123"
                                     "\x0045"))
    assert ("email", "ana@example.org") in found
    # the national digits hide inside the international form with its (0)
    assert ("phone_unparsed", "07700900123") in found
    assert ("phone_unparsed", "0770090012345") not in found  # no run crosses a NUL
    assert set(redaction.candidates("?u=ana%40example.org")) >= {("email",
                                                                  "ana@example.org")}
    assert list(redaction.candidates("no identifier here, order 12345")) == []


def test_a_slash_in_an_address_is_kept_and_both_readings_are_candidates() -> None:
    assert _found("write to ana/x@example.org") == [
        ("email", "ana/x@example.org", "ana/x@example.org")]
    found = set(redaction.candidates("https://crm.example/c/ana/x@example.org"))
    assert {("email", "ana/x@example.org"), ("email", "x@example.org")} <= found
