"""Legal holds: scopes, listing, release; they block erasure and retention alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, run_cli
from vault import holds, ingest, store, tombstones
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture
def held(pair: Pair, tmp_path: Path) -> Pair:
    media_root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media_root))
    chain.seal([conv("w1", ["a"], at="2024-01-10T10:00:00Z"),
                conv("w2", ["ask ana@example.org"], email="zed@example.org", phone=None,
                     at="2024-03-10T10:00:00Z"),
                conv("w3", ["c"], email="ana@example.org", phone=None,
                     at="2024-05-10T10:00:00Z")])
    chain.seal([conv("a1", ["d"], email="zed@example.org", phone=None,
                     at="2024-03-10T10:00:00Z")], source="app")
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def _covered(pair: Pair) -> dict[str, list[str]]:
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        key = tombstones.load_key(pair.vault_path, conn)
        names = dict(conn.execute("SELECT id, conversation_id FROM conversations"))
        return {names[c]: h for c, h in holds.covering(conn, key, names).items()}


def _hold(pair: Pair, *args: str) -> Any:
    r = run_cli("hold", "add", *args, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return r.json()


@pytest.mark.parametrize("args,expected", [
    (["--source", "app"], ["a1"]),
    (["--conversation", "w2"], ["w2"]),
    (["--conversation", "web/w2"], ["w2"]),
    (["--since", "2024-03-01", "--until", "2024-03-31"], ["a1", "w2"]),
    (["--source", "web", "--since", "2024-03-01"], ["w2", "w3"]),
    (["--email", "ANA@example.org"], ["w2", "w3"]),  # as customer and mentioned
    (["--subject", "ana@example.org"], ["w2", "w3"]),
    (["--subject", "+44 7700 900123"], ["w1"]),
])
def test_each_scope_covers_what_it_says(held: Pair, args: list[str],
                                        expected: list[str]) -> None:
    _hold(held, "H", "--reason", "litigation", *args)
    got = _covered(held)
    assert sorted(got) == expected
    assert all(names == ["H"] for names in got.values())


def test_list_release_and_names(held: Pair) -> None:
    home = ("--home", str(held.vault_path))
    made = _hold(held, "LIT-1", "--reason", "claim", "--email", "ana@example.org")
    assert made["scope"] == {"subject_identifiers": 1}  # hashes are never shown
    assert run_cli("hold", "add", "LIT-1", "--reason", "again", "--source", "web",
                   *home).code == 2
    assert run_cli("hold", "add", "EMPTY", "--reason", "no scope", *home).code == 2
    assert run_cli("hold", "add", "NOREASON", "--reason", " ", "--source", "web",
                   *home).code == 2

    listed = run_cli("hold", "list", "--json", *home).json()["holds"]  # type: ignore
    assert [h["name"] for h in listed] == ["LIT-1"]
    assert run_cli("hold", "release", "LIT-1", "--reason", "settled", *home).code == 0
    assert run_cli("hold", "release", "LIT-1", *home).code == 2
    assert run_cli("hold", "list", "--json", *home).json()["holds"] == []  # type: ignore
    every = run_cli("hold", "list", "--all", "--json", *home).json()["holds"]  # type: ignore
    assert every[0]["released_at"] and every[0]["released_by"]
    assert _covered(held) == {}


def test_holds_never_store_the_identifier(held: Pair) -> None:
    _hold(held, "LIT-2", "--reason", "claim", "--email", "ana@example.org")
    with store.open_store(held.vault_path / store.FILE_NAME) as conn:
        rows = " ".join(str(x) for r in conn.execute("SELECT * FROM legal_holds") for x in r)
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log")]
    assert "ana" not in rows and "hold.add" in actions


@pytest.mark.parametrize("args,said", [
    (["--source", "wbe"], "no source named 'wbe' is stored or configured (known: app, web)"),
    (["--since", "2024-03-01", "--until", "2024-01-01"], "is after --until"),
])
def test_a_hold_that_could_cover_nothing_is_refused(held: Pair, args: list[str],
                                                    said: str) -> None:
    r = run_cli("hold", "add", "H", "--reason", "litigation", *args,
                "--home", held.vault_path)
    assert r.code == 2 and said in r.err, r.err
    listed = run_cli("hold", "list", "--json", "--home", held.vault_path)
    assert listed.json()["holds"] == []  # type: ignore[index]


@pytest.mark.parametrize("args", [
    ["--conversation", "nosuch"], ["--conversation", "nosuch/w2"],
    ["--conversation", "web/nosuch"], ["--conversation", "w2", "--source", "app"],
])
def test_a_hold_on_a_conversation_not_held_is_refused(held: Pair, args: list[str]) -> None:
    """A typo would protect nothing while the hold list says it does."""
    r = run_cli("hold", "add", "H", "--reason", "claim", *args, "--home", held.vault_path)
    assert r.code == 2, r.err
    assert "is held" in r.err and "cover nothing" in r.err
    assert run_cli("hold", "list", "--json", "--home", held.vault_path).json() in (
        [], {"holds": []})


@pytest.mark.parametrize("subjects,said", [
    (["not-an-id"], "the --subject value is not a possible phone number"),
    (["ana@example.org", "x@"], "--subject value 2 of 2 is not an e-mail address"),
])
def test_a_bad_subject_value_is_named_as_subject(held: Pair, subjects: list[str],
                                                 said: str) -> None:
    """The message names the option given, not the --phone or --email it is read as."""
    args = [a for s in subjects for a in ("--subject", s)]
    r = run_cli("hold", "add", "H", "--reason", "claim", *args, "--home", held.vault_path)
    assert r.code == 2 and said in r.err, r.err
    assert "--phone" not in r.err and "--email" not in r.err
