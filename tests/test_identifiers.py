"""Identifier normalisation and discovery: e-mail, phone, names, text folding."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault import identifiers as ids


@pytest.mark.parametrize("written, normal", [
    ("Ana.Example@Example.ORG", "ana.example@example.org"),
    ("  <ana@example.org>  ", "ana@example.org"),
    ("mailto:Ana@Example.org", "ana@example.org"),
    ("zoë@exämple.de", "zoë@exämple.de"),
    ("zoe\u0308@example.de", "zoë@example.de"),  # NFD in, NFC out
    ("first+tag@sub.example.co.uk", "first+tag@sub.example.co.uk"),
])
def test_normalise_email(written: str, normal: str) -> None:
    assert ids.normalise_email(written) == normal


@pytest.mark.parametrize("bad", ["", None, "ana", "ana@", "@example.org", "ana@example",
                                 "ana@@example.org", "ana example@x.org", "ana@-x.org",
                                 "a@b.c1", "x" * 65 + "@example.org"])
def test_not_an_email(bad: str | None) -> None:
    assert ids.normalise_email(bad) is None


def test_find_emails_in_text() -> None:
    text = ("Write to Ana.Example@Example.org, or <ben.sample@example.org>. "
            "Not: ana@ or @example.org or x@y; again ana.example@example.org.")
    assert ids.find_emails(text) == ["ana.example@example.org", "ben.sample@example.org"]


@pytest.mark.parametrize("name, code", [("GB", "GB"), ("gb", "GB"), ("UK", "GB"),
                                        (" uk ", "GB"), ("us", "US"), (None, None), ("", None)])
def test_region(name: str | None, code: str | None) -> None:
    assert ids.region(name) == code


@pytest.mark.parametrize("bad", ["XX", "England", "G"])
def test_unknown_region_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match=f"unknown phone region '{bad}'"):
        ids.region(bad)


def test_known_regions_are_the_libraries() -> None:
    # region() answers from this copy without importing phonenumbers: it must not drift
    import phonenumbers

    assert ids._KNOWN_REGIONS == frozenset(phonenumbers.SUPPORTED_REGIONS)


@pytest.mark.parametrize("name, code", [("gb", "GB"), ("UK", "GB"), ("XX", None)])
def test_region_outside_the_copy_asks_phonenumbers(monkeypatch: pytest.MonkeyPatch,
                                                   name: str, code: str | None) -> None:
    monkeypatch.setattr(ids, "_KNOWN_REGIONS", frozenset())
    if code is None:
        with pytest.raises(ValueError, match="unknown phone region"):
            ids.region(name)
    else:
        assert ids.region(name) == code


@pytest.mark.parametrize("written", ["07700 900123", "07700-900-123", "07700.900.123",
                                     "(07700) 900123", "+44 7700 900123", "0044 7700 900123",
                                     "+44 (0)7700 900123", "+447700900123"])
def test_normalise_phone_any_written_form(written: str) -> None:
    assert ids.normalise_phone(written, "UK") == "+447700900123"


def test_phone_without_region_only_international() -> None:
    assert ids.normalise_phone("07700 900123", None) is None
    assert ids.normalise_phone("0044 7700 900123", None) == "+447700900123"
    assert ids.normalise_phone("+1 (202) 555-0148", None) == "+12025550148"


def test_fictional_numbers_are_possible_and_kept() -> None:
    import phonenumbers

    number = phonenumbers.parse("07700 900123", "GB")
    assert not phonenumbers.is_valid_number(number)
    assert ids.normalise_phone("07700 900123", "GB") == "+447700900123"
    found, _ = ids.find_phones("ring 07700 900123", "GB")
    assert found == ["+447700900123"]


@pytest.mark.parametrize("bad", ["", None, "12", "call me", "+44 12", "1" * 70])
def test_not_a_phone(bad: str | None) -> None:
    assert ids.normalise_phone(bad, "GB") is None


def test_find_phones_reports_what_needs_a_region() -> None:
    text = "Call 020 7946 0018 or +44 7700 900456; order 4471, date 2024-03-01, ref 123456."
    assert ids.find_phones(text, None) == (["+447700900456"], ["02079460018"])
    assert ids.find_phones(text, "GB") == (["+442079460018", "+447700900456"], [])


def test_fold_text_and_name_key() -> None:
    assert ids.fold_text("Zoë") == ids.fold_text("Zoe\u0308") == ids.fold_text("ZOE") == "zoe"
    assert ids.fold_text("Müller Straße ﬁle") == "muller strasse file"
    assert ids.fold_text("ＡＢＣ") == "abc"
    assert ids.fold_text("がっこう") == "がっこう"  # kana voicing marks carry meaning
    assert ids.fold_text("住所") == "住所"
    assert ids.name_key("  ZOË \t Müller\n") == "zoe muller"


@given(st.text())
def test_fold_text_is_nfc_and_idempotent(text: str) -> None:
    folded = ids.fold_text(text)
    assert unicodedata.is_normalized("NFC", folded)
    assert ids.fold_text(folded) == folded


@given(st.text())
def test_name_key_is_idempotent(text: str) -> None:
    key = ids.name_key(text)
    assert ids.name_key(key) == key
    assert key == key.strip() and "  " not in key


@given(st.from_regex(r"\+44 ?7[0-9]{3} ?[0-9]{3} ?[0-9]{3}", fullmatch=True))
def test_normalise_phone_is_idempotent(written: str) -> None:
    normal = ids.normalise_phone(written, None)
    assert normal is not None and normal.startswith("+447")
    assert ids.normalise_phone(normal, "US") == normal


@given(st.emails())
def test_normalise_email_is_idempotent(email: str) -> None:
    normal = ids.normalise_email(email)
    if normal is not None:
        assert ids.normalise_email(normal) == normal


def test_collect_from_participants_and_text() -> None:
    conv = {"participants": [
        {"id": "a", "role": "customer", "name": "Ana", "email": "ANA@example.org",
         "phone": "07700 900123"}],
        "messages": [{"id": "1", "at": "2024-01-01T00:00:00Z", "from": "a",
                      "text": "or ben@example.org, +1 202 555 0148",
                      "attachments": [{"text": "call 020 7946 0018"}]}]}
    found = ids.collect(conv, None)
    assert found.emails == ["ana@example.org", "ben@example.org"]
    assert found.phones == ["+12025550148"]
    assert found.unparsed_phones == ["07700900123", "02079460018"]
    assert ids.collect(conv, "GB").phones == ["+447700900123", "+12025550148",
                                              "+442079460018"]
    # a number no country has stays unparsed with a region too (preview dropped it)
    conv["participants"][0]["phone"] = "+12 345 578"
    assert ids.collect(conv, "GB").unparsed_phones == ["12345578"]


def test_digits_glued_to_letters_are_not_phone_numbers() -> None:
    """A parcel code such as AB123456789GB once indexed as +44123456789."""
    from vault import identifiers

    assert identifiers.find_phones("tracking AB123456789GB", "GB") == ([], [])
    assert identifiers.spans("tracking AB123456789GB", "GB") == []
    assert identifiers.find_phones("Tel:+44 7700 900123.", "GB")[0] == ["+447700900123"]
