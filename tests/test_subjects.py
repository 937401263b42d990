"""Subject find: one person however written, nobody else, reasons, review, indexes only.

(The real export formats are exercised end to end in test_cases_search.py:
Telegram, Messenger, Slack and Bot Framework inputs through their readers.)
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, run_cli
from vault import ingest, store
from vault.subjects import Subject, find
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture
def people(pair: Pair, tmp_path: Path) -> Pair:
    media_root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media_root))
    slack = conv("s1", ["hi from slack"], email=None, phone=None, at="2024-02-01T10:00:00Z")
    slack["participants"][0]["platform_ids"] = {"slack": "U0MARA"}
    chain.seal([
        conv("w1", ["hello"], email="MARA.QUINT@Example.ORG", phone="07700 900123",
             at="2024-01-10T10:00:00Z"),
        conv("w2", ["again"], email=None, phone="0044 7700 900123", at="2024-03-10T10:00:00Z"),
        conv("w3", ["my friend is on 07700900123 or mara.quint@example.org"],
             email="ana@example.org", phone="+44 7700 900456", at="2024-04-10T10:00:00Z"),
        conv("w4", ["nothing of her"], email="ana@example.org", phone="+44 7700 900456",
             at="2024-05-10T10:00:00Z"),
        conv("w5", ["same name, no identifiers"], email=None, phone=None,
             at="2024-06-10T10:00:00Z"),
        slack])
    chain.seal([conv("a1", ["app chat"], email="mara.quint@example.org", phone=None,
                     at="2024-07-10T10:00:00Z")], source="app")
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def _find(pair: Pair, *args: str) -> dict[str, Any]:
    r = run_cli("subject", "find", *args, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return r.json()  # type: ignore


def _ids(out: dict[str, Any], match: str = "exact") -> list[str]:
    return sorted(r["conversation_id"] for r in out["results"] if r["match"] == match)


def test_the_same_person_written_differently_is_found_everywhere(people: Pair) -> None:
    by_email = _find(people, "--email", "  Mara.Quint@EXAMPLE.org ")
    by_phone = _find(people, "--phone", "+44 (0) 7700 900 123")
    by_national = _find(people, "--phone", "07700-900-123")

    assert _ids(by_email) == ["a1", "w1", "w3"]
    assert _ids(by_phone) == _ids(by_national) == ["w1", "w2", "w3"]
    [w3] = [r for r in by_phone["results"] if r["conversation_id"] == "w3"]
    assert w3["reasons"] == ["phone mentioned in message 1"]
    assert not w3["subject_is_customer"]
    [w1] = [r for r in by_email["results"] if r["conversation_id"] == "w1"]
    assert w1["reasons"] == ["participant e-mail (customer)"] and w1["subject_is_customer"]


def test_another_person_is_not_found(people: Pair) -> None:
    assert _ids(_find(people, "--email", "ana@example.org")) == ["w3", "w4"]
    assert _find(people, "--email", "nobody@example.org")["results"] == []
    assert _find(people, "--phone", "+44 7700 900999")["results"] == []


def test_platform_id_and_name_only_matches(people: Pair) -> None:
    assert _ids(_find(people, "--id", "slack:U0MARA")) == ["s1"]
    out = _find(people, "--email", "mara.quint@example.org", "--name", "MARA  quint")
    # Every conversation here has a participant named Mara Quint: those without
    # an exact identifier are listed apart, never merged.
    assert _ids(out) == ["a1", "w1", "w3"]
    assert _ids(out, "needs review") == ["s1", "w2", "w4", "w5"]
    assert out["exact"] == 3 and out["needs_review"] == 4
    review = [r for r in out["results"] if r["match"] == "needs review"]
    assert all(r["reasons"] == ["participant name only (needs review)"] for r in review)
    assert [r["match"] for r in out["results"]][:3] == ["exact"] * 3  # exact ones first


def test_source_and_date_filters(people: Pair) -> None:
    email = ("--email", "mara.quint@example.org")
    assert _ids(_find(people, *email, "--source", "app")) == ["a1"]
    assert _ids(_find(people, *email, "--since", "2024-04-10")) == ["a1", "w3"]
    assert _ids(_find(people, *email, "--until", "2024-04-10")) == ["w1", "w3"]
    assert _ids(_find(people, *email, "--since", "2024-02-01", "--until", "2024-05-01")) == \
        ["w3"]
    bad = run_cli("subject", "find", *email, "--since", "last week", "--home",
                  people.vault_path)
    assert bad.code == 2 and "not a date" in bad.err


def test_unusable_identifiers_are_usage_errors_without_echoing_them(people: Pair) -> None:
    r = run_cli("subject", "find", "--email", "not-an-address", "--home", people.vault_path)
    assert r.code == 2 and "not-an-address" not in r.err and "--email" in r.err
    assert run_cli("subject", "find", "--home", people.vault_path).code == 2


def test_answers_come_from_indexes_never_a_scan(people: Pair) -> None:
    statements: list[str] = []
    with store.open_store(people.vault_path / store.FILE_NAME) as conn:
        conn.set_trace_callback(statements.append)
        subject = Subject.parse(emails=["mara.quint@example.org"], phones=["07700 900123"],
                                names=["Mara Quint"], ids=["slack:U0MARA"], region="GB")
        assert find(conn, subject)
        conn.set_trace_callback(None)
        plans = []
        for sql in statements:
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                plans += [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert plans
    # The only scans allowed are of the handful of identifiers asked for.
    scans = [p for p in plans if p.startswith("SCAN") and p != "SCAN w"
             and not p.endswith("CONSTANT ROWS")]
    assert scans == [], scans
    assert any("idx_identifiers_kind_value" in p for p in plans), plans
    assert any("idx_mentions_kind_value" in p for p in plans)


def test_the_whole_command_reads_indexes_never_a_kind_at_a_time(people: Pair) -> None:
    """subject find as the command runs it (linked identifiers, restrictions, audit).

    An index searched by ``kind`` alone walks every e-mail address held: a
    linked-identifier query did, 70 ms a link on a store of 36,000 conversations.
    """
    from vault import subjects

    statements: list[str] = []
    with subjects.open_vault(people.vault_path) as v:
        v.conn.set_trace_callback(statements.append)
        subject = Subject.parse(emails=["mara.quint@example.org"], region="GB")
        assert subjects.find_for(v, subject)["linked"], "a linked phone: the slow query ran"
        v.conn.set_trace_callback(None)
        plans = [row[-1] for sql in statements
                 if sql.lstrip().upper().startswith(("SELECT", "WITH"))
                 for row in v.conn.execute("EXPLAIN QUERY PLAN " + sql)]
    data = ("identifiers", "mentions", "participants", "messages", "conversations")
    slow = [p for p in plans if p.endswith("(kind=?)")
            or (p.startswith("SCAN") and p.split()[1] in data)]
    assert slow == [], slow


def test_restricted_subjects_are_hidden_and_counted(people: Pair) -> None:
    home = ("--home", str(people.vault_path))
    r = run_cli("restrict", "--email", "mara.quint@example.org", "--reason", "disputed",
                "--json", *home)
    assert r.code == 0, r.err

    out = _find(people, "--email", "mara.quint@example.org")
    assert out["results"] == [] and out["restricted_hidden"] == 3
    hits = run_cli("search", "hello", "--json", *home).json()
    assert hits["results"] == [] and hits["restricted_hidden"] == 1  # type: ignore
    # Another person's search does not show her conversations either.
    assert _ids(_find(people, "--email", "ana@example.org")) == ["w4"]

    lifted = run_cli("restrict", "--lift", "--email", "mara.quint@example.org", "--reason",
                     "resolved", *home)
    assert lifted.code == 0, lifted.err
    assert _ids(_find(people, "--email", "mara.quint@example.org")) == ["a1", "w1", "w3"]
    again = run_cli("restrict", "--lift", "--email", "mara.quint@example.org", "--reason",
                    "again", *home)
    assert again.code == 2


def test_a_search_cut_at_its_limit_says_more_may_match(pair: Pair, tmp_path: Path) -> None:
    """'50 conversation(s)' must not read as all there is when more match."""
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv(f"p{i}", [f"parcel {i} is late"])
                                          for i in range(3)])
    ingest.ingest_media(pair.vault_path, media_root)
    home = ("--home", str(pair.vault_path))
    every = run_cli("search", "parcel", "--json", *home).json()
    assert len(every["results"]) == 3 and every["more"] is False  # type: ignore[index]
    cut = run_cli("search", "parcel", "--limit", "2", *home)
    assert cut.code == 0 and "more may match" in cut.err, cut.err
    assert run_cli("search", "parcel", "--limit", "2", "--json",
                   *home).json()["more"] is True  # type: ignore[index]
    assert "more may match" not in run_cli("search", "parcel", "--limit", "3", *home).err


def test_every_find_is_audited_with_hashed_targets(people: Pair) -> None:
    _find(people, "--email", "mara.quint@example.org", "--purpose", "DSAR-2024-0001")
    with store.open_store(people.vault_path / store.FILE_NAME) as conn:
        row = conn.execute("SELECT action, target, purpose FROM audit_log ORDER BY seq DESC "
                           "LIMIT 1").fetchone()
        log = " ".join(str(x) for r in conn.execute("SELECT * FROM audit_log") for x in r)
    assert row[0] == "subject.find" and row[2] == "DSAR-2024-0001"
    assert row[1].startswith("email:") and len(row[1]) == len("email:") + 32
    assert "mara" not in log.lower() and "900123" not in log


def test_find_is_a_plain_function_too(people: Pair) -> None:
    conn = sqlite3.connect(people.vault_path / store.FILE_NAME)
    try:
        got = find(conn, Subject.parse(emails=["MARA.QUINT@example.org"], region="GB"),
                   source="web")
    finally:
        conn.close()
    assert [m.conversation_id for m in got] == ["w1", "w3"]


def test_a_stored_number_that_does_not_parse_is_found_by_its_digits(pair: Pair,
                                                                    tmp_path: Path) -> None:
    """WhatsApp's sample export holds '+12 345 578': no country has such numbers."""
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("odd", ["hello"], email=None, phone="+12 345 578", at="2024-01-10T10:00:00Z"),
        conv("other", ["hi"], email=None, phone="+12 345 579", at="2024-01-11T10:00:00Z")])
    ingest.ingest_media(pair.vault_path, media_root)

    r = run_cli("subject", "find", "--phone", "+12 345 578", "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    assert "the --phone value is not a possible phone number: looked up as the digits" in r.err
    out = r.json()
    assert _ids(out) == [] and _ids(out, "needs review") == ["odd"]
    # too few digits to name anybody: refused, the value not repeated
    r = run_cli("subject", "find", "--phone", "12 34", "--phone", "+44 7700 900123",
                "--home", pair.vault_path)
    assert r.code == 2 and "--phone value 1 of 2 is not a possible phone number" in r.err
    assert "12 34" not in r.err


def test_a_dsar_case_keeps_a_number_that_does_not_parse(pair: Pair) -> None:
    from vault import dsar
    from vault.subjects import open_vault

    subject = Subject.parse(emails=["mara@example.org"], phones=["+12 345 578"])
    assert subject.phone_digits == ["12345578"] and subject.notes
    with open_vault(pair.vault_path) as v:
        case = dsar.open_case(v, date(2024, 1, 1), subject)
        assert dsar.subject_of(v.conn, case.id) == subject


def test_the_platform_of_an_id_is_any_case_and_must_be_held(people: Pair) -> None:
    """'Slack:U0MARA' is Slack's U0MARA; 'slakc:U0MARA' is a typo, not 'nothing held'."""
    assert _ids(_find(people, "--id", "Slack:U0MARA")) == ["s1"]
    assert _ids(_find(people, "--id", "SLACK:U0MARA")) == ["s1"]
    for args in (["subject", "find"], ["erase", "--reason", "Art. 17", "--yes"]):
        typo = run_cli(*args, "--id", "slakc:U0MARA", "--home", people.vault_path)
        assert typo.code == 2, (args, typo.err)
        assert "no 'slakc' user id is held: the platforms held are slack" in typo.err
    assert _ids(_find(people, "--id", "slack:U0MARA")) == ["s1"], "nothing was erased"


def test_an_id_of_a_reader_platform_none_is_held_of_finds_nothing(people: Pair) -> None:
    """No Telegram id held (never, or purged by retention): "nothing held", not a typo."""
    assert _find(people, "--id", "telegram:4711")["results"] == []


def test_reader_platforms_are_those_the_readers_write() -> None:
    import re

    from vault.subjects import READER_PLATFORMS

    root = Path(__file__).parent.parent / "vault" / "sources"
    # platform_ids={"slack": ...} or, in Telegram's reader, ids = {"telegram": ...}
    written = {m for f in root.glob("*.py")
               for m in re.findall(r'(?:platform_ids=|ids = )[{]"([a-z]+)"', f.read_text())}
    assert written == READER_PLATFORMS


def test_a_possible_but_invalid_number_is_said_how_it_was_read(people: Pair) -> None:
    """A US number written nationally on a GB vault: no silent '0 exact'."""
    got = run_cli("subject", "find", "--phone", "(977) 625-2661", "--json",
                  "--home", people.vault_path)
    assert got.code == 0
    [note] = got.json()["notes"]  # type: ignore[index]
    assert "read with region GB as +449776252661, which is not a valid number" in note
    assert note in got.err
    fine = run_cli("subject", "find", "--phone", "07700 900123", "--json",
                   "--home", people.vault_path)
    assert "notes" not in fine.json() and "note:" not in fine.err  # type: ignore[operator]


def test_a_number_found_nowhere_points_to_search(people: Pair) -> None:
    """12025550147 written in text on a GB vault is no valid number there: not indexed."""
    got = run_cli("subject", "find", "--phone", "12025550147", "--json",
                  "--home", people.vault_path)
    assert got.code == 0 and got.json()["results"] == []  # type: ignore[index]
    assert any("'chatvault search'" in n for n in got.json()["notes"])  # type: ignore
    plus = run_cli("subject", "find", "--phone", "+44 7700 900999", "--json",
                   "--home", people.vault_path)
    assert "which is not a valid number (no country assigns it)" in plus.err
    assert "write it with +" not in plus.err  # it was written with +


def test_a_telegram_user_number_finds_the_id_as_exports_write_it() -> None:
    """Telegram writes from_id 'user123450513'; a DPO holds the number 123450513."""
    assert Subject.parse(ids=["Telegram:123450513"]).platform_ids == \
        ["telegram:123450513", "telegram:user123450513"]
    assert Subject.parse(ids=["telegram:user9"]).platform_ids == ["telegram:user9"]
    assert Subject.parse(ids=["slack:123"]).platform_ids == ["slack:123"]
