"""Erasure: nothing of the subject left anywhere, and it stays erased.

After ``chatvault erase`` the subject is not found by subject find, by
full-text search, in the FTS5 vocabulary, in the raw bytes of store.db and
its WAL, or among the attachments; replaying the original bundle, sealing
the same conversations again, and rebuilding the store from the archive all
leave it erased. Where the subject was only mentioned, the conversation
stays with the identifier redacted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gdpr_kit import MARA_EMAIL, MARA_TRACES, SAMPLE, Vault, blob, sample_vault, traces
from vault import audit, bundle, ingest, store
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return sample_vault(tmp_path)


def _erase(v: Vault, *extra: str) -> Any:
    r = v.cli("erase", "--email", "MARA.QUINT@example.org", "--phone", "07700 900123",
              "--reason", "Art. 17 request by e-mail", "--yes", "--json", *extra)
    assert r.code == 0, r.err
    return r.json()


def _vocab(v: Vault) -> set[str]:
    with v.conn() as conn:
        conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, messages_fts, "
                     "'row')")
        return {t for (t,) in conn.execute("SELECT term FROM temp.vocab")}


def _ids(v: Vault) -> list[str]:
    with v.conn() as conn:
        return [c for (c,) in conn.execute("SELECT conversation_id FROM conversations "
                                           "ORDER BY conversation_id")]


def _texts(v: Vault, cid: str) -> list[str]:
    with v.conn() as conn:
        return [t for (t,) in conn.execute(
            "SELECT m.text FROM messages m JOIN conversations c ON c.id = m.conversation "
            "WHERE c.conversation_id = ? ORDER BY m.position", (cid,))]


def _assert_gone(v: Vault) -> None:
    found = v.cli("subject", "find", "--email", MARA_EMAIL, "--phone", "+44 7700 900123",
                  "--json").json()
    assert found["results"] == [] and found["restricted_hidden"] == 0  # type: ignore
    for q in ("quint", MARA_EMAIL, "07700 900123"):
        assert v.cli("search", q, "--json").json()["results"] == [], q  # type: ignore
    assert not {"quint", "900123", "447700900123"} & _vocab(v)
    assert traces(v.files(), MARA_TRACES) == {}


def test_before_erasure_the_traces_are_there(vault: Vault) -> None:
    """The scan below would see the subject: it is not vacuously clean."""
    with vault.conn() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert set(traces(vault.files(), MARA_TRACES)["store.db"]) >= {
        "mara.quint@example.org", "07700 900123", "quint"}
    assert "quint" in _vocab(vault)


def test_erase_removes_customer_conversations_and_redacts_mentions(vault: Vault) -> None:
    out = _erase(vault)

    assert out["status"] == "done"
    assert out["conversations_removed"] == 2 and out["conversations_redacted"] == 1
    assert out["scrub"]["found"] == 0
    assert _ids(vault) == ["web-1002", "web-1003", "web-1004", "web-1006"]
    assert _texts(vault, "web-1003")[2] == \
        "Merci. Mon amie Mara ([erased e-mail]) a eu le même problème."
    with vault.conn() as conn:
        record = conn.execute("SELECT record FROM conversations WHERE conversation_id = "
                              "'web-1003'").fetchone()[0]
        assert MARA_EMAIL not in record and "[erased e-mail]" in record
        assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] >= 2
    _assert_gone(vault)


def test_replayed_and_resealed_bundles_leave_it_erased(vault: Vault, tmp_path: Path) -> None:
    _erase(vault)
    before = _ids(vault)

    replay = stick(tmp_path / "replay")
    (outbox(replay) / vault.bundle.name).write_bytes(vault.bundle.read_bytes())
    [dup] = ingest.ingest_media(vault.home, replay)
    assert dup.status == "duplicate"

    # The exporter sends the same conversations again, as the next bundle.
    with vault.conn() as conn:
        prev = conn.execute("SELECT sha256 FROM bundles").fetchone()[0]
    again = stick(tmp_path / "again")
    bundle.seal_jsonl(SAMPLE, outbox(again) / bundle.file_name("sample", 2),
                      vault.pair.exporter.identity(), [vault.pair.vault.public()],
                      source="sample", sequence=2, prev_hash=prev)
    [out] = ingest.ingest_media(vault.home, again)

    assert out.status == "ingested"
    assert out.counts["tombstoned"] == 2 and out.counts["redacted"] == 1
    assert _ids(vault) == before
    assert "[erased e-mail]" in _texts(vault, "web-1003")[2]
    with vault.conn() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _assert_gone(vault)


def test_rebuild_from_the_archive_leaves_it_erased(vault: Vault, tmp_path: Path) -> None:
    rebuild = pytest.importorskip("vault.rebuild")
    _erase(vault)

    report = rebuild.rebuild(tmp_path / "rebuilt", home=vault.home)

    again = Vault(vault.pair, vault.stick, vault.bundle)
    again.pair = type(vault.pair)(vault.pair.exporter, type("H", (), {
        "path": tmp_path / "rebuilt"})(), tmp_path)
    assert report.ingested >= 1
    assert _ids(again) == ["web-1002", "web-1003", "web-1004", "web-1006"]
    assert "[erased e-mail]" in _texts(again, "web-1003")[2]
    with again.conn() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _assert_gone(again)


def test_attachments_only_the_subject_sent_are_removed(pair: Any, tmp_path: Path,
                                                       cli: Any) -> None:
    mine_sha, mine = blob(os.urandom(4096))
    shared_sha, shared = blob(os.urandom(4096))
    media_root = stick(tmp_path / "stick")
    c1 = conv("c1", ["my receipt", "thanks"])
    c1["messages"][0]["attachments"] = [{"sha256": mine_sha, "name": "r.pdf", "size": 4096},
                                        {"sha256": shared_sha, "name": "l.pdf", "size": 4096}]
    c2 = conv("c2", ["label please"], email="other@example.org", phone=None)
    c2["messages"][0]["attachments"] = [{"sha256": shared_sha, "name": "l.pdf",
                                         "size": 4096}]
    chain = Chain(pair, outbox(media_root))
    chain.seal([c1, c2], blobs={mine_sha: mine, shared_sha: shared})
    ingest.ingest_media(pair.vault_path, media_root)
    db = pair.vault_path / store.FILE_NAME
    with store.open_store(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert mine[:64] in db.read_bytes()  # random bytes are stored as they are

    r = cli("erase", "--email", "mara.quint@example.org", "--reason", "request", "--yes",
            "--json", "--home", pair.vault_path)

    assert r.code == 0, r.err
    assert r.json()["attachments_removed"] == 1
    with store.open_store(db) as conn:
        held = {s for (s,) in conn.execute("SELECT sha256 FROM attachments")}
        assert held == {shared_sha}
        assert conn.execute("SELECT count(*) FROM attachment_chunks WHERE sha256 = ?",
                            (mine_sha,)).fetchone()[0] == 0
    assert mine[:64] not in db.read_bytes() and shared[:64] in db.read_bytes()

    # The same file arriving again in a later bundle is not stored again.
    again = stick(tmp_path / "again")
    chain.folder = outbox(again)
    chain.seal([conv("c1", ["my receipt", "thanks", "again"])], blobs={mine_sha: mine})
    [out] = ingest.ingest_media(pair.vault_path, again)
    assert out.counts["tombstoned"] == 1 and out.counts["tombstoned_blobs"] == 1
    with store.open_store(db) as conn:
        assert {s for (s,) in conn.execute("SELECT sha256 FROM attachments")} == {shared_sha}


def test_platform_ids_of_the_customer_are_erased_with_them(pair: Any, tmp_path: Path,
                                                            cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    a = conv("a", ["hello"], phone=None)
    a["participants"][0]["platform_ids"] = {"slack": "U0MARA"}
    b = conv("b", ["only my slack id here"], email=None, phone=None)
    b["participants"][0]["platform_ids"] = {"slack": "U0MARA"}
    chain = Chain(pair, outbox(media_root))
    chain.seal([a, b, conv("c", ["someone else"], email="x@example.org", phone=None)])
    ingest.ingest_media(pair.vault_path, media_root)

    r = cli("erase", "--email", "mara.quint@example.org", "--reason", "request", "--yes",
            "--json", "--home", pair.vault_path)

    assert r.code == 0 and r.json()["conversations_removed"] == 2
    later = stick(tmp_path / "later")
    chain.folder = outbox(later)
    e = conv("e", ["a new chat, known by the slack id only"], email=None, phone=None)
    e["participants"][0]["platform_ids"] = {"slack": "U0MARA"}
    chain.seal([b, e, conv("d", ["same name, no identifier"], email=None, phone=None)])
    [out] = ingest.ingest_media(pair.vault_path, later)
    assert out.counts["tombstoned"] == 2
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        ids = {c for (c,) in conn.execute("SELECT conversation_id FROM conversations")}
    assert ids == {"c", "d"}


def test_a_platform_id_only_listed_in_another_conversation_is_replaced(
        pair: Any, tmp_path: Path, cli: Any) -> None:
    """A Slack channel lists its members in extra: the erased person's id goes there too."""
    media_root = stick(tmp_path / "stick")
    mine = conv("a", ["hello"], phone=None, platform="slack")
    mine["participants"][0]["platform_ids"] = {"slack": "U0MARA"}
    channel = conv("g", ["a channel Mara never wrote in"], email="x@example.org", phone=None,
                   platform="slack",
                   extra={"channel_info": {"members": ["U0MARA", "U0OTHER"]}})
    chain = Chain(pair, outbox(media_root))
    chain.seal([mine, channel])
    ingest.ingest_media(pair.vault_path, media_root)

    r = cli("erase", "--email", "mara.quint@example.org", "--reason", "request", "--yes",
            "--json", "--home", pair.vault_path)
    assert r.code == 0 and r.json()["conversations_removed"] == 1, r.err
    db = pair.vault_path / store.FILE_NAME

    def members() -> list[str]:
        with store.open_store(db) as conn:
            (record,) = conn.execute("SELECT record FROM conversations WHERE "
                                     "conversation_id = 'g'").fetchone()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return json.loads(record)["extra"]["channel_info"]["members"]

    first = members()
    assert first[1] == "U0OTHER" and first[0].startswith("[erased ")
    assert b"U0MARA" not in db.read_bytes()
    later = stick(tmp_path / "later")  # the channel sent again: it stays replaced
    chain.folder = outbox(later)
    chain.seal([channel, conv("h", ["more"], email="x@example.org", phone=None)])
    [out] = ingest.ingest_media(pair.vault_path, later)
    assert out.status == "ingested" and members() == first
    assert b"U0MARA" not in db.read_bytes()


def test_legal_hold_blocks_erasure_until_released(vault: Vault) -> None:
    assert vault.cli("hold", "add", "LIT-7", "--reason", "litigation",
                     "--email", MARA_EMAIL).code == 0
    with vault.conn() as conn:
        before = store.dump(conn)

    r = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "request", "--yes")

    assert r.code == 4 and "LIT-7" in r.err and "nothing erased" in r.err
    with vault.conn() as conn:
        assert store.dump(conn) == before
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log")]
    assert "erase.refused" in actions and "erase" not in actions

    assert vault.cli("hold", "release", "LIT-7", "--reason", "settled").code == 0
    assert _erase(vault)["conversations_removed"] == 2


def test_a_hold_on_the_source_blocks_too(vault: Vault) -> None:
    vault.cli("hold", "add", "AUDIT-2024", "--reason", "tax audit", "--source", "sample")
    r = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "request", "--yes",
                  "--dry-run")
    assert r.code == 4 and "AUDIT-2024" in r.err


def test_four_eyes_needs_a_different_operator(vault: Vault,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = vault.pair.vault.config
    cfg.write_text(cfg.read_text().replace("four_eyes = false", "four_eyes = true"))
    monkeypatch.setattr(audit, "identify", lambda: audit.Operator("alice", "loginuid"))
    asked = _erase(vault)
    assert asked["status"] == "pending"
    assert len(_ids(vault)) == 6
    status = vault.cli("vault", "status", "--json").json()  # said until someone approves
    assert any(f"erasure {asked['erasure_id']} waits for a second approver" in f["message"]
               for f in status["findings"])  # type: ignore[index]

    same = vault.cli("erase", "approve", asked["erasure_id"])
    assert same.code == 4 and "different operator" in same.err
    assert len(_ids(vault)) == 6

    # one person naming another in SUDO_USER is still one person
    monkeypatch.setenv("SUDO_USER", "bob")
    forged = vault.cli("erase", "approve", asked["erasure_id"])
    assert forged.code == 4 and "different operator" in forged.err
    assert len(_ids(vault)) == 6

    monkeypatch.setattr(audit, "identify", lambda: audit.Operator("bob", "loginuid"))
    declined = vault.cli("erase", "approve", asked["erasure_id"].lower(), "--json",
                         input_text="n\n")
    assert declined.code == 0 and declined.json()["status"] == "pending"
    assert "remove  " in declined.err and MARA_EMAIL in declined.err  # what bob approves
    assert len(_ids(vault)) == 6
    done = vault.cli("erase", "approve", asked["erasure_id"], "--json", "--yes")
    assert done.code == 0, done.err
    assert done.json()["conversations_removed"] == 2
    [item] = vault.cli("erase", "list", "--json").json()["erasures"]  # type: ignore
    assert (item["requested_by"], item["approved_by"], item["status"]) == \
        ("alice", "bob", "done")
    with vault.conn() as conn:
        assert conn.execute("SELECT count(*) FROM erasure_subjects").fetchone()[0] == 0
    _assert_gone(vault)


def test_dry_run_and_declined_confirmation_change_nothing(vault: Vault) -> None:
    with vault.conn() as conn:
        before = store.dump(conn)
    dry = vault.cli("erase", "--email", MARA_EMAIL, "--dry-run", "--json")
    assert dry.code == 0
    plan = dry.json()
    linked = plan.pop("linked_not_given")  # type: ignore
    assert plan == {"remove": ["sample/web-1001", "sample/web-1005"],
                    "redact": ["sample/web-1003"], "identifiers": 1,
                    "held_by": [], "held_conversations": 0}
    # her phone is on the same participant record: named, not added
    assert [(x["kind"], x["value"]) for x in linked] == [("phone", "+447700900123")]
    # Declining is the operator's choice, not a failure: exit 0, said on stderr.
    no = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "r", input_text="n\n")
    assert no.code == 0 and "nothing erased" in no.err and no.out == ""
    quiet = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "r", "--json",
                      input_text="\n")
    assert quiet.code == 0 and quiet.json() == {"status": "not confirmed", "erased": False}
    with vault.conn() as conn:
        assert store.dump(conn) == before


def test_erase_by_case_scrubs_the_case(vault: Vault) -> None:
    case = vault.cli("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL,
                     "--phone", "07700 900123", "--json").json()
    case_id = case["case_id"]  # type: ignore
    r = vault.cli("erase", "--case", case_id, "--reason", "Art. 17", "--yes", "--json")
    assert r.code == 0 and r.json()["conversations_removed"] == 2
    with vault.conn() as conn:
        rows = conn.execute("SELECT kind, value, erased FROM dsar_subjects").fetchall()
    assert {k for k, _, _ in rows} == {"email", "phone"}
    assert all(e == 1 and len(val) == 64 for _, val, e in rows)
    _assert_gone(vault)


def test_identifiers_given_with_a_case_are_added_not_ignored(vault: Vault) -> None:
    """The plan says 'add --phone to include it': beside --case too, it is included."""
    case_id = vault.cli("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL,
                        "--json").json()["case_id"]  # type: ignore
    alone = vault.cli("erase", "--case", case_id, "--reason", "r", "--dry-run", "--json")
    assert [x["value"] for x in alone.json()["linked_not_given"]] == ["+447700900123"]
    both = vault.cli("erase", "--case", case_id, "--phone", "07700 900123", "--reason",
                     "Art. 17", "--yes", "--json")
    assert both.code == 0, both.err
    assert both.json()["linked_not_given"] == [] and both.json()["conversations_removed"] == 2
    _assert_gone(vault)


def test_erase_needs_a_reason_and_an_exact_identifier(vault: Vault) -> None:
    assert vault.cli("erase", "--email", MARA_EMAIL, "--yes").code == 2
    assert vault.cli("erase", "--reason", "r", "--yes").code == 2
    with vault.conn() as conn:
        assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 0


def test_the_plan_reads_the_subject_s_records_by_index(vault: Vault) -> None:
    """The ids linked to the subject come from its own records, not from every id held.

    (The plan also reads every stored record for the subject written in any
    form: that scan is on purpose, and is the one SCAN of conversations.)
    """
    from vault import erasureplan, subjects

    statements: list[str] = []
    with subjects.open_vault(vault.home) as v:
        v.conn.set_trace_callback(statements.append)
        erasureplan.plan(v, subjects.Subject.parse(emails=[MARA_EMAIL], region="GB"))
        v.conn.set_trace_callback(None)
        plans = [row[-1] for sql in statements
                 if sql.lstrip().upper().startswith(("SELECT", "WITH"))
                 for row in v.conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert any("idx_identifiers_kind_value" in p for p in plans)
    assert [p for p in plans if p.endswith("(kind=?)")] == []
