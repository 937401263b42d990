"""Store rebuild from archive + state file: same digest, erasures stay, a fresh machine works."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, make_pair
from vault import canonical, ingest, statefile, statehook, store, tombstones
from vault_kit import Chain, consistent, conv, outbox, stick

ERASED = "erased.person@example.org"


@pytest.fixture
def live(pair: Pair, tmp_path: Path) -> Pair:
    """Two sources, a grown conversation, an attachment shared by two bundles."""
    blob = b"%PDF-1.4 scanned receipt " * 500
    sha = hashlib.sha256(blob).hexdigest()
    c1 = conv("c1", ["see the receipt"])
    c1["messages"][0]["attachments"] = [{"sha256": sha, "name": "r.pdf", "size": len(blob)}]
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([c1, conv("c2", ["hi"], email=ERASED, phone="+44 7700 900999")],
            blobs={sha: blob})
    ch.seal([conv("c2", ["hi", "still me"], email=ERASED, phone="+44 7700 900999"),
             conv("c3", ["someone else"], email="other@example.org", phone=None)])
    ch.seal([conv("a1", ["app"], email="a1@example.org")], source="app")
    assert all(o.status == "ingested" for o in ingest.ingest_media(pair.vault_path, media_root))
    return pair


def digest(cli: Any, home: Path) -> str:
    res = cli("vault", "digest", "--home", home)
    assert res.code == 0, res.err
    return res.out.strip()


def erase_by_hand(home: Path, email: str) -> None:
    """A tombstone for the address and the conversations where it is the customer removed.

    (What erasure does; done here with the store's own calls.)
    """
    conn = store.open_store(home / store.FILE_NAME)
    try:
        key = tombstones.load_key(home, conn)
        ids = [r[0] for r in conn.execute(
            "SELECT DISTINCT i.conversation FROM identifiers i JOIN participants p ON "
            "p.conversation = i.conversation AND p.participant_id = i.participant_id "
            "WHERE i.kind = 'email' AND i.value = ? AND p.role = 'customer'", (email,))]
        with store.transaction(conn):
            tombstones.add(conn, key, "email", email)
            for conv_id in ids:
                store.delete_conversation(conn, conv_id)
    finally:
        conn.close()
    statehook.changed(home, "erasure")


def holds_email(home: Path, email: str) -> bool:
    conn = store.open_store(home / store.FILE_NAME)
    try:
        found = conn.execute("SELECT count(*) FROM identifiers WHERE value = ?",
                             (email,)).fetchone()[0]
        found += conn.execute("SELECT count(*) FROM conversations WHERE record LIKE ?",
                              (f"%{email}%",)).fetchone()[0]
        return bool(found)
    finally:
        conn.close()


def test_rebuild_digest_equals_live(live: Pair, tmp_path: Path, cli: Any) -> None:
    new = tmp_path / "rebuilt"
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", new, "--json")

    assert res.code == 0, res.err
    report = res.json()
    assert report["ingested"] == 3 and report["complete"] and report["missing"] == []
    assert digest(cli, new) == digest(cli, live.vault_path) == report["digest"]["digest"]
    with store.open_store(new / store.FILE_NAME) as conn:
        consistent(conn)
        assert conn.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1
    # the new home has the vault's key, trust and config
    assert (new / "keys" / "secret.key").read_bytes() == \
        (live.vault_path / "keys" / "secret.key").read_bytes()
    assert (new / "config.toml").read_text() == live.vault.config.read_text()
    assert json.loads((new / "trust.json").read_text())["keys"].keys() == \
        json.loads((live.vault_path / "trust.json").read_text())["keys"].keys()


def test_digest_covers_only_what_is_held(live: Pair, tmp_path: Path, cli: Any) -> None:
    before = digest(cli, live.vault_path)
    with store.open_store(live.vault_path / store.FILE_NAME) as conn:
        conn.execute("UPDATE bundles SET ingested_at = '2000-01-01T00:00:00Z'")
        conn.execute("UPDATE conversations SET ingested_at = '2000-01-01T00:00:00Z'")
    assert digest(cli, live.vault_path) == before
    with store.open_store(live.vault_path / store.FILE_NAME) as conn:
        conn.execute("UPDATE conversations SET record = replace(record, 'app', 'APP')")
    assert digest(cli, live.vault_path) != before
    res = cli("vault", "digest", "--home", live.vault_path, "--json")
    assert res.json()["sources"] == {"app": 1, "web": 3}


def test_after_erasure_the_rebuilt_store_still_lacks_the_subject(live: Pair, tmp_path: Path,
                                                                cli: Any) -> None:
    erase_by_hand(live.vault_path, ERASED)
    assert not holds_email(live.vault_path, ERASED)

    new = tmp_path / "rebuilt"
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", new, "--json")

    assert res.code == 0, res.err
    assert res.json()["tombstoned"] >= 1
    assert not holds_email(new, ERASED)
    assert digest(cli, new) == digest(cli, live.vault_path)
    code = cli("drill", "--all", "--home", new, "--json")
    assert code.code == 0, code.out
    assert code.json()["body"]["counts"]["erased"] >= 1


def test_fresh_machine_with_paper_key_and_archive_copy(live: Pair, tmp_path: Path,
                                                       cli: Any, proc: Any) -> None:
    """Only the paper backup and a copy of the archive folder: rebuild, drill, same digest."""
    erase_by_hand(live.vault_path, ERASED)
    paper = cli("keys", "export-paper", "--home", live.vault_path)
    assert paper.code == 0
    (tmp_path / "paper.txt").write_text(paper.out)
    live_digest = digest(cli, live.vault_path)

    fresh = tmp_path / "fresh-machine" / "vault"
    res = proc("keys", "import-paper", tmp_path / "paper.txt", "--home", fresh)
    assert res.code == 0, res.err
    shutil.copytree(live.vault_path / "archive", fresh / "archive", dirs_exist_ok=True)
    res = proc("vault", "rebuild", "--into", fresh, "--json",
               env={"CHATVAULT_HOME": str(tmp_path / "nowhere")})
    assert res.code == 0, res.err
    res = proc("drill", "--all", "--home", fresh, "--json")
    assert res.code == 0, res.out + res.err
    assert json.loads(res.out)["body"]["passed"]
    assert digest(cli, fresh) == live_digest
    assert not holds_email(fresh, ERASED)


def test_missing_archive_file_is_reported(live: Pair, tmp_path: Path, cli: Any) -> None:
    (live.vault_path / "archive" / "app" / "app-00000001.cvb").unlink()
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", tmp_path / "n", "--json")
    assert res.code == 3
    assert res.json()["missing"] == ["app #1"] and res.json()["ingested"] == 2


def test_refusals(live: Pair, tmp_path: Path, cli: Any) -> None:
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", live.vault_path)
    assert res.code == 4 and "rebuild into a new home" in res.err
    inside = live.vault_path / "archive" / "rebuilt"  # would be backed up with the archive
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", inside)
    assert res.code == 2 and "inside the vault's home" in res.err and not inside.exists()

    other = make_pair(tmp_path / "other")
    foreign = tmp_path / "foreign-state.cvs"
    statefile.write(other.vault_path, "test")
    shutil.copy(statefile.path_of(other.vault_path), foreign)
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", tmp_path / "n1",
              "--state", foreign, "--json")
    assert res.code == 4 and res.json()["error"] == "untrusted_signer"

    state = statefile.path_of(live.vault_path)
    data = bytearray(state.read_bytes())
    data[-100] ^= 0x01
    damaged = tmp_path / "damaged.cvs"
    damaged.write_bytes(bytes(data))
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", tmp_path / "n2",
              "--state", damaged)
    assert res.code == 3

    state.unlink()
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", tmp_path / "n3")
    assert res.code == 2 and "no state file" in res.err
    assert not (tmp_path / "n1").exists() and not (tmp_path / "n3").exists()


def test_gdpr_tables_travel_in_the_state_file(live: Pair, tmp_path: Path) -> None:
    """Whatever the GDPR operations keep (a case and its subject here) comes back."""
    with store.open_store(live.vault_path / store.FILE_NAME) as conn:
        tables = statefile.state_tables(conn)
        if "dsar_cases" not in tables:
            pytest.skip("no DSAR tables in this schema yet")
        cols = [r[1] for r in conn.execute("PRAGMA table_info(dsar_cases)")]
        notnull = {r[1]: r[3] for r in conn.execute("PRAGMA table_info(dsar_cases)")}
        row = {c: (f"v-{c}" if notnull[c] else None) for c in cols}
        row["id"] = "D-1"
        conn.execute(f"INSERT INTO dsar_cases ({', '.join(row)}) VALUES "
                     f"({', '.join('?' * len(row))})", list(row.values()))
    statehook.changed(live.vault_path, "dsar")

    from vault import rebuild

    rebuild.rebuild(tmp_path / "n", home=live.vault_path)
    with store.open_store(tmp_path / "n" / store.FILE_NAME) as conn:
        back = conn.execute("SELECT * FROM dsar_cases").fetchall()
    with store.open_store(live.vault_path / store.FILE_NAME) as conn:
        assert back == conn.execute("SELECT * FROM dsar_cases").fetchall()
    assert canonical.dumps(back)


def test_after_a_real_erasure_with_a_mention_rebuild_matches(pair: Pair, tmp_path: Path,
                                                            cli: Any) -> None:
    """vault.erasure removes the customer's conversations and redacts a mention elsewhere;
    a rebuild from the untouched archive comes back to exactly that."""
    from vault import erasure
    from vault.subjects import Subject, open_vault

    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("c1", ["hello"], email=ERASED, phone=None),
        conv("c2", [f"my colleague is {ERASED}"], email="other@example.org", phone=None),
        conv("c3", ["unrelated"], email="third@example.org", phone=None)])
    ingest.ingest_media(pair.vault_path, media_root)
    with open_vault(pair.vault_path) as v:
        subject = Subject.parse(emails=[ERASED])
        eid = erasure.request(v, subject, "Art. 17 request")
        erasure.execute(v, eid, subject, "Art. 17 request")
    assert not holds_email(pair.vault_path, ERASED)

    new = tmp_path / "rebuilt"
    res = cli("vault", "rebuild", "--home", pair.vault_path, "--into", new, "--json")

    assert res.code == 0, res.err
    assert not holds_email(new, ERASED)
    assert digest(cli, new) == digest(cli, pair.vault_path)
    with store.open_store(new / store.FILE_NAME) as conn:
        ids = sorted(r[0] for r in conn.execute("SELECT conversation_id FROM conversations"))
        (c2,) = conn.execute("SELECT record FROM conversations WHERE conversation_id = 'c2'"
                             ).fetchone()
    assert ids == ["c2", "c3"] and "[erased" in c2


def test_rebuild_text_says_what_was_left_out_and_why(live: Pair, tmp_path: Path,
                                                    cli: Any) -> None:
    res = cli("vault", "rebuild", "--home", live.vault_path, "--into", tmp_path / "r")
    assert res.code == 0, res.err
    assert res.out.strip() == digest(cli, live.vault_path)
    assert "3 bundles ingested" in res.err
    assert "archived copies left out: 0 erased (tombstones), 0 purged (retention)" in res.err
    assert "the store holds" in res.err
