"""The store: migrations, connection settings, folding, full-text search, deletion."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CASES, Pair
from vault import fulltext, identifiers, ingest, migrations, store
from vault.errors import InputRejected, StoreDamaged, UnsupportedVersion, UsageError
from vault_kit import Chain, consistent, conv, count, open_store, outbox, stick


# -- migrations and connections -----------------------------------------------------------

def test_new_store_records_each_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = store.open_store(path, create=True)
    rows = conn.execute("SELECT number, name FROM migrations").fetchall()
    conn.close()
    assert rows == [(s.number, s.name) for s in migrations.steps()]
    assert rows[0] == (1, "initial")

    again = store.open_store(path)
    assert migrations.migrate(again) == []
    assert again.execute("SELECT count(*) FROM migrations").fetchone()[0] == len(rows)
    again.close()


def test_pragmas_on_every_connection(tmp_path: Path) -> None:
    conn = store.open_store(tmp_path / "store.db", create=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store.open_store(path, create=True).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO migrations VALUES (99, 'future', '2030-01-01T00:00:00Z')")
    raw.commit()
    raw.close()
    with pytest.raises(UnsupportedVersion, match="newer version; upgrade"):
        store.open_store(path)


def test_a_new_step_applies_in_order_and_a_failing_one_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    store.open_store(path, create=True).close()
    shipped = migrations.steps()

    def add_holds(db: Any) -> None:
        db["case_notes"].create({"id": int, "note": str}, pk="id")

    def broken(db: Any) -> None:
        db["half_done"].create({"id": int}, pk="id")
        raise RuntimeError("step failed half way")

    monkeypatch.setattr(migrations, "steps", lambda: shipped + [
        migrations.Step(len(shipped) + 1, "case_notes", add_holds),
        migrations.Step(len(shipped) + 2, "broken", broken)])
    with pytest.raises(RuntimeError, match="half way"):
        store.open_store(path)

    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "case_notes" in tables and "half_done" not in tables
    assert [r[0] for r in raw.execute("SELECT number FROM migrations")] == \
        list(range(1, len(shipped) + 2))
    raw.close()


def test_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreDamaged, match="store is damaged.*vault rebuild"):
        store.open_store(path)


def test_transaction_rolls_back_everything_on_error(tmp_path: Path) -> None:
    conn = store.open_store(tmp_path / "store.db", create=True)
    with pytest.raises(ValueError):
        with store.transaction(conn):
            conn.execute("INSERT INTO settings VALUES ('a', '1')")
            with store.transaction(conn):
                conn.execute("INSERT INTO settings VALUES ('b', '2')")
            raise ValueError("no")
    assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == 0
    assert not conn.in_transaction
    conn.close()


# -- folding ------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                max_size=40)


@settings(max_examples=3000, deadline=None)
@given(_TEXT)
def test_fast_fold_equals_the_reference_fold(text: str) -> None:
    assert fulltext.fold(text) == identifiers.fold_text(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["e\u0301", "é", "ü", "ß", "ｚ", "か\u3099", "が", "İ",
                                 "\u05d0\u05b4", "\U0001d165", "😀", "a", " ", "Σ", "ﬁ",
                                 "\u0301", "\u1e9e", "ǅ"]), max_size=12).map("".join))
def test_fast_fold_on_the_hard_cases(text: str) -> None:
    assert fulltext.fold(text) == identifiers.fold_text(text)


def test_cjk_characters_become_tokens() -> None:
    assert fulltext.index_text("顧客の住所") == " 顧  客  の  住  所 "
    assert fulltext.index_text("ABC-4471の件").split() == ["abc-4471", "の", "件"]
    assert fulltext.index_text("Zoë") == "zoe"


# -- search ---------------------------------------------------------------------------------

def _archive_documents(pair: Pair, root: Path, documents: list[dict[str, str]],
                       context: dict[str, str] | None = None) -> sqlite3.Connection:
    """Each document a one-message conversation, sealed, ingested."""
    media_root = stick(root / "stick")
    convs = [conv(d["id"], [d["text"]], email=None, phone=None) for d in documents]
    Chain(pair, outbox(media_root), context=context or {}).seal(convs)
    [out] = ingest.ingest_media(pair.vault_path, media_root)
    assert out.status == "ingested"
    return open_store(pair)


@pytest.mark.parametrize("case", ["19-search-email-punct", "20-search-nfd", "22-search-cjk"])
def test_search_cases_from_bug_reports(pair: Pair, tmp_path: Path, case: str) -> None:
    path = CASES / "inputs" / f"{case}.json"
    if not path.exists():
        pytest.skip("cases not present")
    spec = json.loads(path.read_text("utf-8"))
    with _archive_documents(pair, tmp_path, spec["documents"]) as conn:
        for q in spec["queries"]:
            got = sorted(h.conversation_id for h in store.search(conn, q["q"]))
            assert got == sorted(q["expect_ids"]), q["q"]


def test_phone_numbers_found_however_written(pair: Pair, tmp_path: Path) -> None:
    text = (CASES / "inputs" / "23-phone-uk-vs-gb.txt").read_text("utf-8")
    docs = [{"id": "d1", "text": text}, {"id": "d2", "text": "order 4471, no number here"}]
    with _archive_documents(pair, tmp_path, docs, {"phone_region": "UK"}) as conn:
        mentions = {v for (v,) in conn.execute("SELECT value FROM mentions "
                                               "WHERE kind = 'phone'")}
        assert mentions == {"+447700900123", "+442079460018", "+447700900456"}
        for q in ("+44 7700 900123", "07700 900123", "+447700900123", "020 7946 0018",
                  "+44 20 7946 0018", "07700900456"):
            assert [h.conversation_id for h in store.search(conn, q, region="GB")] == \
                ["d1"], q


def test_numbers_without_region_are_recorded_unparsed(pair: Pair, tmp_path: Path) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace('phone_region = "GB"', 'phone_region = ""'))
    text = (CASES / "inputs" / "25-phone-no-region.txt").read_text("utf-8")
    with _archive_documents(pair, tmp_path, [{"id": "d1", "text": text}]) as conn:
        got = set(conn.execute("SELECT kind, value FROM mentions"))
    assert got == {("phone", "+12025550148"), ("phone_unparsed", "12025550147")}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_query_gives_hits_or_a_clear_error(tmp_path_factory: Any, query: str) -> None:
    conn = _search_store(tmp_path_factory)
    try:
        hits = store.search(conn, query)
    except UsageError as exc:
        assert "query" in str(exc)
    else:
        assert isinstance(hits, list)


_STORES: dict[str, sqlite3.Connection] = {}


def _search_store(factory: Any) -> sqlite3.Connection:
    if "s" not in _STORES:
        from conftest import make_pair

        root = factory.mktemp("search")
        pair = make_pair(root)
        docs = [{"id": "d1", "text": 'He said "NEAR(a b)" AND col:x OR -y * ^z'},
                {"id": "d2", "text": "plain words"}]
        _STORES["s"] = _archive_documents(pair, root, docs)
    return _STORES["s"]


@pytest.mark.parametrize("query", ['"', '""', "*", "@@@", "   ", "--", "()", "^"])
def test_queries_with_nothing_to_search_for_are_errors(tmp_path_factory: Any,
                                                       query: str) -> None:
    with pytest.raises(UsageError):
        store.search(_search_store(tmp_path_factory), query)


@pytest.mark.parametrize("query,hits", [
    ("NEAR(a b)", ["d1"]), ("col:x", ["d1"]), ("AND", ["d1"]), ("-y", ["d1"]),
    ("plain OR nothing", []), ('"plain words"', ["d2"]), ("words plain", ["d2"]),
    ('"words plain"', []),
])
def test_query_syntax_is_never_interpreted(tmp_path_factory: Any, query: str,
                                           hits: list[str]) -> None:
    got = [h.conversation_id for h in store.search(_search_store(tmp_path_factory), query)]
    assert got == hits


def test_search_filters_by_source_and_limit(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv(f"w{i}", ["refund please"]) for i in range(5)], source="web")
    ch.seal([conv("a1", ["refund please"])], source="app")
    ingest.ingest_media(pair.vault_path, media_root)
    with open_store(pair) as conn:
        assert len(store.search(conn, "refund")) == 6
        assert [h.source for h in store.search(conn, "refund", source="app")] == ["app"]
        assert len(store.search(conn, "refund", limit=2)) == 2
        with pytest.raises(UsageError):
            store.search(conn, "refund", limit=0)


# -- deletion ------------------------------------------------------------------------------

def test_delete_conversation_leaves_no_trace(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("gone", ["write to erase.me@example.org", "or 07700 900777"]),
        conv("kept", ["nothing personal"], email="other@example.org")])
    ingest.ingest_media(pair.vault_path, media_root)
    with open_store(pair) as conn:
        (cid,) = conn.execute("SELECT id FROM conversations WHERE conversation_id = 'gone'"
                              ).fetchone()
        with store.transaction(conn):
            store.delete_conversation(conn, cid)
        for table in ("participants", "messages", "identifiers", "mentions"):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE conversation = ?",
                                (cid,)).fetchone()[0] == 0, table
        assert store.search(conn, "erase.me@example.org") == []
        assert count(conn, "messages_fts") == count(conn, "messages") == 1
        consistent(conn)


def test_new_store_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The store holds plaintext: 0600 from the first byte, -wal and -shm too."""
    old = os.umask(0o022)
    try:
        conn = store.open_store(tmp_path / "store.db", create=True)
        try:
            conn.execute("INSERT INTO settings (key, value) VALUES ('probe', 'x')")
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        finally:
            conn.close()
    finally:
        os.umask(old)

    assert modes == {"store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600}


@pytest.mark.parametrize("how", ["removed", "emptied"])
def test_a_lost_store_is_never_replaced_by_an_empty_one(tmp_path: Path, how: str) -> None:
    """An empty store would say 'nothing held' and take erased people back from old bundles."""
    from conftest import run_cli
    from vault import home

    h = home.create("vault", tmp_path / "v", "vault-a")
    db = h.path / store.FILE_NAME
    for extra in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        extra.unlink(missing_ok=True)
    if how == "emptied":
        db.write_bytes(b"")

    stick = tmp_path / "stick"
    (stick / "chatvault" / "outbox").mkdir(parents=True)
    for args in (["subject", "find", "--email", "a@example.org"], ["search", "hello"],
                 ["vault", "ingest", stick], ["vault", "state-save"]):
        got = run_cli(*args, "--home", h.path)
        assert got.code == 5, (args, got.err)
        assert "store is " in got.err and "vault rebuild" in got.err, got.err
        assert db.exists() == (how == "emptied") and not Path(f"{db}-wal").exists()
    status = run_cli("vault", "status", "--home", h.path, "--json")
    assert status.code == 3 and status.json()["error"] == "store_missing"  # type: ignore
