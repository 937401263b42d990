"""Search and subject-find cases from public bug reports (../shared/cases), end to end.

Each input is read by the real reader (or archived as one-message
conversations for the search cases), sealed into a bundle, ingested, and
then asked through the command line, as a DPO would: ``chatvault search``
and ``chatvault subject find``. Expected values are written here, not read
from cases.json. Plus the family-wide invariants: any query text is searched
as words (a hypothesis property), and a query that cannot be answered fails
loudly instead of answering "no results".
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import CASES, Pair, make_pair, run_cli
from vault import ingest, sources, store
from vault.errors import UsageError
from vault_kit import Chain, conv, outbox, stick

INPUTS = CASES / "inputs"
needs_cases = pytest.mark.skipif(not INPUTS.is_dir(), reason="../shared/cases is absent")


def _set_region(pair: Pair, region: str) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace('phone_region = "GB"', f'phone_region = "{region}"'))


def _archive(pair: Pair, root: Path, convs: list[dict[str, Any]], source: str,
             region: str | None) -> None:
    media_root = stick(root / f"stick-{source}")
    Chain(pair, outbox(media_root), context={"phone_region": region} if region else {}
          ).seal(convs, source=source)
    [out] = ingest.ingest_media(pair.vault_path, media_root)
    assert out.status == "ingested", out.reason


def _documents(pair: Pair, root: Path, case: str) -> list[dict[str, Any]]:
    spec = json.loads((INPUTS / f"{case}.json").read_text("utf-8"))
    _archive(pair, root, [conv(d["id"], [d["text"]], email=None, phone=None)
                          for d in spec["documents"]], "docs", None)
    return spec["queries"]


def _search(pair: Pair, query: str) -> list[str]:
    r = run_cli("search", query, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return sorted(x["conversation_id"] for x in r.json()["results"])  # type: ignore


def _find(pair: Pair, *args: str) -> dict[str, Any]:
    r = run_cli("subject", "find", *args, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return r.json()  # type: ignore


# -- search: 19, 20, 22 -----------------------------------------------------------------

@needs_cases
def test_19_email_punctuation_is_searched_as_words(pair: Pair, tmp_path: Path) -> None:
    _documents(pair, tmp_path, "19-search-email-punct")
    assert _search(pair, "ana.example@example.org") == ["d1"]
    assert _search(pair, "@example.org") == ["d1", "d2"]
    assert _search(pair, "example.org") == ["d1", "d2"]
    assert _search(pair, "ben.sample@example.org") == ["d2"]
    assert _search(pair, '"ana.example"') == ["d1"]


@needs_cases
def test_20_nfc_and_nfd_find_each_other(pair: Pair, tmp_path: Path) -> None:
    queries = _documents(pair, tmp_path, "20-search-nfd")
    written = [q["q"] for q in queries]
    assert "Zoe\u0308" in written and "Mu\u0308ller" in written  # NFD queries are in the file
    for q in ("Zo\u00eb", "Zoe\u0308", "Zoe", "M\u00fcller", "Mu\u0308ller", "Muller"):
        assert _search(pair, q) == ["d1", "d2"], ascii(q)


@needs_cases
def test_22_cjk_substrings_of_any_length(pair: Pair, tmp_path: Path) -> None:
    _documents(pair, tmp_path, "22-search-cjk")
    assert _search(pair, "住所") == ["d1"]
    assert _search(pair, "問い合わせ") == ["d1"]
    assert _search(pair, "ABC") == ["d2"]
    assert _search(pair, "4471") == ["d2"]
    assert _search(pair, "删除") == ["d3"]
    assert _search(pair, "住") == ["d1"]  # one character is a substring too


# -- phone numbers: 23, 25 ----------------------------------------------------------------

def _phone_doc(pair: Pair, root: Path, name: str, region: str | None) -> None:
    text = (INPUTS / name).read_text("utf-8")
    _archive(pair, root, [conv("p1", [text], email=None, phone=None),
                          conv("p2", ["order 4471 shipped on 2024-03-01, ref AB-1234"], email=None,
                               phone=None)], "calls", region)


@needs_cases
def test_23_region_uk_is_gb_and_fictional_ranges_are_found(pair: Pair,
                                                           tmp_path: Path) -> None:
    _set_region(pair, "UK")
    _phone_doc(pair, tmp_path, "23-phone-uk-vs-gb.txt", "UK")
    for phone in ("+447700900123", "07700 900123", "+44 20 7946 0018", "(020) 7946 0018",
                  "+44 7700 900456"):
        out = _find(pair, "--phone", phone, "--source", "calls")
        assert [(r["conversation_id"], r["match"]) for r in out["results"]] == \
            [("p1", "exact")], phone
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        found = {v for (v,) in conn.execute("SELECT value FROM mentions WHERE kind = 'phone'")}
    assert found == {"+447700900123", "+442079460018", "+447700900456"}


@needs_cases
def test_25_no_region_never_guesses_and_reports_unparsed(pair: Pair, tmp_path: Path) -> None:
    _set_region(pair, "")
    _phone_doc(pair, tmp_path, "25-phone-no-region.txt", None)
    out = _find(pair, "--phone", "+1 202 555 0148", "--source", "calls")
    assert [(r["conversation_id"], r["match"]) for r in out["results"]] == [("p1", "exact")]
    # 12025550147 had no country code: reported for review, never an exact match.
    out = _find(pair, "--phone", "+1 202 555 0147", "--source", "calls")
    [r] = out["results"]
    assert r["match"] == "needs review" and "without a country code" in r["reasons"][0]
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        got = set(conn.execute("SELECT kind, value FROM mentions"))
    assert got == {("phone", "+12025550148"), ("phone_unparsed", "12025550147")}
    bad = run_cli("subject", "find", "--phone", "2025550147", "--home", pair.vault_path)
    assert bad.code == 2 and "no phone region" in bad.err


@needs_cases
def test_25_with_region_us_both_are_found(pair: Pair, tmp_path: Path) -> None:
    _set_region(pair, "US")
    _phone_doc(pair, tmp_path, "25-phone-no-region.txt", "US")
    for phone in ("+12025550147", "(202) 555-0148"):
        out = _find(pair, "--phone", phone, "--source", "calls")
        assert [r["match"] for r in out["results"]] == ["exact"], phone


# -- reader cases: subject find after export and ingest -----------------------------------

@needs_cases
@pytest.mark.parametrize("case,fmt,region,emails,phones", [
    ("07-tg-text-entities.json", "telegram", "GB", ["ana.example@example.org"],
     ["+447700900123"]),
    ("10-fb-mojibake.json", "messenger", None, ["zoe.example@example.org"], []),
    ("12-slack-uslackbot.zip", "slack", "GB", ["ana.example@example.org"], ["+447700900123"]),
    ("17-bf-conversationupdate.transcript", "botframework", None,
     ["ana.example@example.org"], []),
])
def test_reader_cases_found_by_subject_find(tmp_path: Path, case: str, fmt: str,
                                            region: str | None, emails: list[str],
                                            phones: list[str]) -> None:
    pair = make_pair(tmp_path)
    source = f"case-{fmt}"
    convs = list(sources.read(INPUTS / case, fmt, sources.ReadOptions(
        source=source, phone_region=region)))
    _archive(pair, tmp_path, convs, source, region)

    for email in emails:
        out = _find(pair, "--email", email.upper(), "--source", source)
        assert out["results"] and all(r["match"] == "exact" for r in out["results"]), email
    for phone in phones:
        out = _find(pair, "--phone", phone, "--source", source)
        assert out["results"] and all(r["match"] == "exact" for r in out["results"]), phone
    assert _find(pair, "--email", "someone.else@example.org", "--source", source
                 )["results"] == []
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        held = set(conn.execute("SELECT kind, value FROM identifiers WHERE kind IN "
                                "('email', 'phone') UNION SELECT kind, value FROM mentions "
                                "WHERE kind IN ('email', 'phone')"))
    assert held == {("email", e) for e in emails} | {("phone", p) for p in phones}


@needs_cases
def test_15_bot_attachment_text_is_searchable(pair: Pair, tmp_path: Path) -> None:
    """Case 15: a bot_message with only bot_id/username; its legacy attachment's text
    ("Tracking AB123456789GB", its fallback) must be indexed with the message."""
    source = "case-slack"
    convs = list(sources.read(INPUTS / "15-slack-bot-no-user.zip", "slack",
                              sources.ReadOptions(source=source)))
    _archive(pair, tmp_path, convs, source, None)
    for query in ("Tracking AB123456789GB", "AB123456789GB", "tracking",
                  '"Tracking AB123456789GB"'):
        assert _search(pair, query) == ["C02ORD0002:2024-03-01"], query
    # the message's own text is found as well, and a tracking number it lacks is not
    assert _search(pair, "Order 4471 shipped") == ["C02ORD0002:2024-03-01"]
    assert _search(pair, "AB987654321GB") == []


# -- any query: words or a clear error, never a syntax error, never a false "nothing" ------

_STORE: dict[str, Any] = {}
_printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                     max_size=40)


def _property_store(factory: Any) -> tuple[sqlite3.Connection, Pair]:
    if "conn" not in _STORE:
        root = factory.mktemp("prop")
        pair = make_pair(root)
        _archive(pair, root, [conv("seed", ["nothing here"], email=None, phone=None)],
                 "seed", None)
        _STORE["pair"] = pair
        _STORE["conn"] = store.open_store(pair.vault_path / store.FILE_NAME)
        _STORE["n"] = 0
    return _STORE["conn"], _STORE["pair"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_printable)
# a combining mark with no base before it: dropped after the document's space,
# so dropped at the start of the query word too
@example(query="\U00016b300")
@example(query="\u0301e")
def test_any_printable_query_finds_what_contains_it(tmp_path_factory: Any,
                                                    query: str) -> None:
    conn, pair = _property_store(tmp_path_factory)
    _STORE["n"] += 1
    cid = f"q{_STORE['n']}"
    with store.transaction(conn):
        conn.execute("INSERT OR IGNORE INTO sources (name, first_seen_at) VALUES "
                     "('prop', '2024-01-01T00:00:00Z')")
        bundle = conn.execute("SELECT id FROM bundles LIMIT 1").fetchone()[0]
        loader = store.Loader(conn, source="prop", bundle=bundle, sequence=1, region=None,
                              retention_days=0, now="2024-01-01T00:00:00Z")
        c = conv(cid, [f"lorem {query} ipsum"], email=None, phone=None)
        from vault import canonical, records

        data, summary = records.canonical_record(canonical.loads(canonical.dumps(c)))
        loader.add(canonical.loads(data), data, summary.last_at)
        loader.flush()
    try:
        hits = store.search(conn, query, limit=10000)
    except UsageError as exc:
        # Only a query with nothing searchable may be refused, and it says so.
        assert any(why in str(exc) for why in ("no letters or digits", "empty search query",
                                               "longer than", "more than"))
        # "nothing searchable" is judged after folding: a query made only of
        # marks the index ignores (Arabic harakat in U+FC5E) has no words left
        from vault import fulltext

        folded = fulltext.fold(query)
        assert not any(ch.isalnum() for ch in folded) or len(query.split()) > 32
        return
    assert cid in {h.conversation_id for h in hits}, ascii(query)


def test_a_query_that_cannot_be_answered_is_not_no_results(pair: Pair, tmp_path: Path) -> None:
    _archive(pair, tmp_path, [conv("d1", ["refund please"], email=None, phone=None)],
             "web", None)
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        conn.execute("DROP TABLE messages_fts")  # a damaged index

    r = run_cli("search", "refund", "--json", "--home", pair.vault_path)

    assert r.code != 0
    assert "could not be answered" in r.err
    assert '"results"' not in r.out
    empty = run_cli("search", "?!", "--home", pair.vault_path)
    assert empty.code == 2 and "no letters or digits" in empty.err
