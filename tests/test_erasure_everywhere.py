"""Erasure reaches every copy of an identifier in a record, and keeps it out.

Chat exports hold the text more than once (Telegram's ``text_entities``, HTML
bodies, Slack ``blocks``, alt text, titles, ``extra`` objects and their keys)
and write an address or number in more than one form (``mailto:``, URL- or
HTML-encoded, digits glued to a prefix). After ``chatvault erase`` none of
them is in the raw bytes of store.db or its WAL, in a restore set opened
online, or in a store rebuilt from the archive; a later bundle does not
bring one back. An erasure whose byte scan still finds the subject is
recorded ``incomplete``, never ``done``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import CASES, Pair
from vault import canonical, ingest, sources, store, storescrub
from vault.sources import ReadOptions
from vault_kit import Chain, conv, outbox, stick

TG_CASE = CASES / "inputs" / "07-tg-text-entities.json"
ANA = "ana.example@example.org"

#: Ana's address in every form the records below write it, any letter case
_ANA_BYTES = re.compile(rb"ana\.example(?:@|%40|&#64;|&commat;)example\.org", re.IGNORECASE)
#: the same, where it is only the end of Diana's address (someone else)
_DIANA_BYTES = re.compile(rb"diana\.example@example\.org", re.IGNORECASE)
#: Ana's number's national digits, whatever separates them
_ANA_DIGITS = re.compile(rb"7\D{0,3}7\D{0,3}0\D{0,3}0\D{0,3}9\D{0,3}0\D{0,3}0\D{0,3}1"
                         rb"\D{0,3}2\D{0,3}3")


def ana_traces(data: bytes) -> dict[str, int]:
    """How often Ana's address (not counting Diana's) and number occur in ``data``."""
    email = len(_ANA_BYTES.findall(data)) - len(_DIANA_BYTES.findall(data))
    return {k: n for k, n in (("email", email), ("phone", len(_ANA_DIGITS.findall(data))))
            if n}


def store_bytes(home: Path) -> bytes:
    with store.open_store(home / store.FILE_NAME) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(p.read_bytes() for p in (home / store.FILE_NAME,
                                            home / (store.FILE_NAME + "-wal"))
                    if p.is_file())


def records(home: Path) -> dict[str, dict[str, Any]]:
    with store.open_store(home / store.FILE_NAME) as conn:
        return {cid: canonical.loads(r) for cid, r in conn.execute(
            "SELECT conversation_id, record FROM conversations")}


def restored(cli: Any, pair: Pair, out: Path, source: str) -> bytes:
    """A restore set of ``source`` made on the vault and opened on the online side."""
    made = cli("restore", "create", "--home", pair.vault_path, "--to",
               pair.exporter.public_key, "--out", out / "set", "--source", source,  # type: ignore
               "--json")
    assert made.code == 0, made.err
    parts = [p["path"] for p in made.json()["parts"]]  # type: ignore
    opened = cli("restore", "open", *parts, "--home", pair.exporter_path, "--out",
                 out / "opened")
    assert opened.code == 0, opened.err
    return (out / "opened" / f"{source}.jsonl").read_bytes()


def rebuilt(cli: Any, pair: Pair, into: Path) -> bytes:
    r = cli("vault", "rebuild", "--into", into, "--home", pair.vault_path, "--json")
    assert r.code == 0, r.err
    return store_bytes(into)


def erase(cli: Any, pair: Pair, *ids: str) -> dict[str, Any]:
    r = cli("erase", *ids, "--reason", "Art. 17 request, case 7", "--yes", "--json",
            "--home", pair.vault_path)
    assert r.code == 0, r.err
    out = r.json()
    assert out["status"] == "done" and out["scrub"]["found"] == 0  # type: ignore
    [listed] = [e for e in cli("erase", "list", "--json", "--home",
                               pair.vault_path).json()["erasures"]  # type: ignore
                if e["id"] == out["erasure_id"]]  # type: ignore
    assert listed["status"] == "done"
    return out  # type: ignore


# -- the Telegram case of the hostile trial ----------------------------------------------

@pytest.mark.skipif(not TG_CASE.is_file(), reason="shared cases not present")
def test_telegram_entities_are_erased_and_restore_and_rebuild_keep_them_out(
        pair: Pair, tmp_path: Path, cli: Any) -> None:
    convs = list(sources.read(TG_CASE, "telegram", ReadOptions(source="tg",
                                                               phone_region="GB")))
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal(convs, source="tg")
    ingest.ingest_media(pair.vault_path, media)
    assert "email" in ana_traces(store_bytes(pair.vault_path))  # the scan is not vacuous

    out = erase(cli, pair, "--email", ANA)  # as in the trial: the e-mail address only

    assert out["conversations_redacted"] == 1
    [record] = records(pair.vault_path).values()
    entities = record["messages"][0]["extra"]["text_entities"]
    assert [e["text"] for e in entities if e["type"] == "email"] == ["[erased e-mail]"]
    assert "Urgent" in record["messages"][0]["text"]  # the rest of the chat stays
    assert "email" not in ana_traces(store_bytes(pair.vault_path))
    back = restored(cli, pair, tmp_path / "restore", "tg")
    assert b"Thanks, we will call you back" in back and "email" not in ana_traces(back)
    assert "email" not in ana_traces(rebuilt(cli, pair, tmp_path / "rebuilt"))


# -- every copy, every written form ------------------------------------------------------

def _everywhere() -> dict[str, Any]:
    """Ana only outside message text: HTML, blocks, a title, alt text, extra keys."""
    c = conv("h1", ["Hello, how can I help?", "My friend asked too."],
             email="zed@example.org", phone=None, title="Re: ANA.Example@example.org")
    c["participants"][0]["name"] = "Zed Other"
    c["participants"][0]["extra"] = {"contacts": {ANA: "friend"}}
    c["extra"] = {"cc": ["Ana <ANA.EXAMPLE@EXAMPLE.ORG>"]}
    c["messages"][0]["extra"] = {"html": (
        '<p>Write to <a href="mailto:ana.example@example.org">her</a>, see '
        '<a href="https://crm.example/find?u=ana.example%40example.org">profile</a> '
        "or &#97;na.example&#64;example.org</p>")}
    c["messages"][1]["extra"] = {"blocks": [{"type": "rich_text", "elements": [
        {"type": "text", "text": "call +44 (0) 7700 900123 or tel07700900123"},
        {"type": "link", "url": "tel:%2B44%207700%20900123"}]}]}
    c["messages"][1]["attachments"] = [{"name": "card.png", "type": "image/png",
                                        "text": "07700-900-123"}]
    return c


def _seal_everything(pair: Pair, root: Path) -> Chain:
    media = stick(root)
    chain = Chain(pair, outbox(media))
    chain.seal([
        _everywhere(),
        conv("h2", ["I am Ana, erase me"], email=ANA, phone="07700 900123"),
        conv("h3", ["write to diana.example@example.org please"], email="dee@example.org",
             phone=None),
    ])
    ingest.ingest_media(pair.vault_path, media)
    return chain


def test_every_string_in_every_written_form_is_erased(pair: Pair, tmp_path: Path,
                                                      cli: Any) -> None:
    _seal_everything(pair, tmp_path / "stick")
    before = ana_traces(store_bytes(pair.vault_path))
    assert before.get("email", 0) >= 6 and before.get("phone", 0) >= 4

    out = erase(cli, pair, "--email", ANA, "--phone", "07700 900123")

    assert (out["conversations_removed"], out["conversations_redacted"]) == (1, 1)
    assert out["scrub"]["others_containing"] >= 1  # Diana's address is not Ana's
    kept = records(pair.vault_path)
    assert sorted(kept) == ["h1", "h3"]
    h1 = json.dumps(kept["h1"])
    assert "Hello, how can I help?" in h1 and "Zed Other" in h1
    assert h1.count("[erased e-mail]") >= 6 and h1.count("[erased phone]") >= 4
    assert "diana.example@example.org" in json.dumps(kept["h3"])
    assert ana_traces(store_bytes(pair.vault_path)) == {}

    back = restored(cli, pair, tmp_path / "restore", "web")
    assert b"Hello, how can I help?" in back and ana_traces(back) == {}
    assert b"diana.example@example.org" in back
    assert ana_traces(rebuilt(cli, pair, tmp_path / "rebuilt")) == {}


def test_a_later_bundle_writing_her_only_outside_the_text_is_redacted(
        pair: Pair, tmp_path: Path, cli: Any) -> None:
    chain = _seal_everything(pair, tmp_path / "stick")
    erase(cli, pair, "--email", ANA, "--phone", "07700 900123")

    later = stick(tmp_path / "later")
    chain.folder = outbox(later)
    named = conv(f"chat:{ANA}", ["a chat named after her"], email="x@example.org",
                 phone=None)
    chain.seal([_everywhere(), named,
                conv("h4", ["new"], email="y@example.org", phone=None,
                     extra={"html": "<a href='mailto:Ana.Example@example.org'>x</a>"})])
    [result] = ingest.ingest_media(pair.vault_path, later)

    assert result.status == "ingested", result.reason
    assert result.counts["tombstoned"] == 1 and result.counts["redacted"] == 2
    assert sorted(records(pair.vault_path)) == ["h1", "h3", "h4"]
    assert ana_traces(store_bytes(pair.vault_path)) == {}


def test_an_agent_with_her_address_as_id_keeps_whole_references(
        pair: Pair, tmp_path: Path, cli: Any) -> None:
    c = conv("a1", ["Hi, Ana Example here, I will help", "thanks Ana Example"],
             email="zed@example.org", phone=None)
    c["participants"][1] = {"id": ANA, "role": "agent", "name": "Ana Example",
                            "email": ANA, "session": {"ip": "192.0.2.7"}}
    c["messages"][0]["from"] = ANA
    c["messages"][1]["from"] = "c1"
    c["messages"][1]["reply_to"] = c["messages"][0]["id"]
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([c])
    ingest.ingest_media(pair.vault_path, media)

    erase(cli, pair, "--email", ANA)

    record = records(pair.vault_path)["a1"]
    agent = record["participants"][1]
    assert agent["id"].startswith("[erased e-mail ") and agent["name"] == "[erased]"
    assert set(agent) == {"id", "role", "name"}
    assert record["messages"][0]["from"] == agent["id"]
    assert record["messages"][0]["text"] == "Hi, [erased] here, I will help"
    assert "Ana" not in json.dumps(record) and ana_traces(store_bytes(pair.vault_path)) == {}


# -- an erasure is done only when the proof is clean --------------------------------------

def test_traces_left_make_the_erasure_incomplete_not_done(pair: Pair, tmp_path: Path,
                                                          cli: Any) -> None:
    _seal_everything(pair, tmp_path / "stick")
    home = ("--home", str(pair.vault_path))
    # An operator typed her address into a case note: chatvault keeps notes as written.
    assert cli("dsar", "open", "--received", "2024-09-02", "--email", ANA, "--note",
               f"asked on the phone, wrote from {ANA}", *home).code == 0

    r = cli("erase", "--email", ANA, "--reason", "Art. 17", "--yes", "--json", *home)

    assert r.code == 1
    assert r.json()["error"] == "erasure_incomplete"  # type: ignore
    assert "INCOMPLETE" in r.err and "dsar_cases.note" in r.err
    [item] = cli("erase", "list", "--json", *home).json()["erasures"]  # type: ignore
    assert item["status"] == "incomplete" and item["done_at"] is None
    assert "dsar_cases.note" in item["note"] and item["counts"]["scrub"]["found"] >= 1
    status = cli("vault", "status", "--json", *home)
    assert status.code == 2
    assert any(f["check"] == "erasure" and f["level"] == "CRITICAL"
               for f in status.json()["findings"])  # type: ignore
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log")]
    assert "erase.incomplete" in actions
    assert sorted(records(pair.vault_path)) == ["h1", "h3"]  # the data itself is gone


def test_a_second_run_finishes_an_incomplete_erasure(pair: Pair, tmp_path: Path, cli: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _seal_everything(pair, tmp_path / "stick")
    home = ("--home", str(pair.vault_path))
    # A trace the scrub cannot explain (a page that escaped zeroing) on the first run.
    real = storescrub.byte_scan
    monkeypatch.setattr(storescrub, "byte_scan", lambda *a, **k: real(*a, **k) + 1)
    first = cli("erase", "--email", ANA, "--reason", "Art. 17", "--yes", *home)
    assert first.code == 1 and "run the same 'chatvault erase' again" in first.err
    monkeypatch.setattr(storescrub, "byte_scan", real)

    second = erase(cli, pair, "--email", ANA)

    assert second["erasure_id"] == "E-0002"
    listed = cli("erase", "list", "--json", *home).json()
    items = {e["id"]: e for e in listed["erasures"]}  # type: ignore
    assert items["E-0001"]["status"] == "done"
    assert items["E-0001"]["note"] == "completed by E-0002"
    status = cli("vault", "status", "--json", *home).json()
    assert [f for f in status["findings"] if f["check"] == "erasure"] == []  # type: ignore


def test_a_reason_holding_an_identifier_is_refused(pair: Pair, tmp_path: Path,
                                                   cli: Any) -> None:
    _seal_everything(pair, tmp_path / "stick")
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        before = store.dump(conn)
    r = cli("erase", "--email", ANA, "--reason", f"asked by {ANA}", "--yes",
            "--home", pair.vault_path)
    assert r.code == 2 and "audit log" in r.err and ANA not in r.err
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        assert store.dump(conn) == before


def test_an_erasure_request_whose_reason_holds_an_identifier_is_refused(
        tmp_path: Path) -> None:
    from requests_kit import world

    w = world(tmp_path)
    before = w.snapshot()
    w.ask(w.dpo, "erase", emails=["mara.quint@example.org"], phones=[],
          reason="letter from mara.quint@example.org")
    [got] = w.answer()
    assert (got.status, got.reason) == ("refused", "malformed"), got.message
    assert "audit log" in got.message and "mara.quint" not in got.message
    assert w.snapshot() == before


def test_a_copy_the_ingest_hook_would_not_make_is_removed_whole(
        pair: Pair, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the hook's cheap first look miss a form decide() finds, a rebuild would
    bring the original back: such a conversation is removed whole and tombstoned so."""
    from vault import tombstones

    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([
        conv("x1", ["hello"], email="zed@example.org", phone=None,
             extra={"html": f"<a href='mailto:{ANA}'>her</a>"}),
        conv("x2", ["unrelated"], email="zed@example.org", phone=None)])
    ingest.ingest_media(pair.vault_path, media)
    monkeypatch.setattr(tombstones.Filter, "written_anywhere", lambda self, conv: False)

    out = erase(cli, pair, "--email", ANA)

    assert (out["removed_whole"], out["conversations_redacted"]) == (1, 0)
    assert sorted(records(pair.vault_path)) == ["x2"]
    assert "email" not in ana_traces(rebuilt(cli, pair, tmp_path / "rebuilt"))
    assert sorted(records(tmp_path / "rebuilt")) == ["x2"]
