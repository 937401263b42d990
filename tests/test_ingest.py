"""Verified ingest: what goes in comes out, idempotence, and every refusal."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

import export_kit
from conftest import CORPUS, Pair, make_pair
from vault import canonical, chain, identifiers, ingest, receipts, records, sources, staging
from vault import store, tombstones
from vault_kit import Chain, consistent, conv, count, open_store, outbox, stick

SAMPLE = Path(__file__).resolve().parents[1] / "vault" / "samples" / "conversations.jsonl"


def _expected_identifiers(c: dict[str, Any], region: str | None) -> set[tuple[str, str]]:
    """Participant identifiers as subject search needs them, derived independently."""
    out = set()
    for p in c["participants"]:
        if p.get("email"):
            out.add(("email", p["email"].strip().lower()))
        if p.get("phone"):
            e164 = identifiers.normalise_phone(p["phone"], region)
            out.add(("phone", e164) if e164 else
                    ("phone_unparsed", "".join(ch for ch in p["phone"] if ch.isdigit())))
        if p.get("name"):
            out.add(("name", identifiers.name_key(p["name"])))
        if p.get("customer_id"):
            out.add(("customer_id", p["customer_id"]))
        for k, v in sorted((p.get("platform_ids") or {}).items()):
            out.add(("platform_id", f"{k}:{v}"))
    if c.get("customer_id"):
        out.add(("customer_id", c["customer_id"]))
    return out


def assert_store_holds(conn: Any, source: str, convs: list[dict[str, Any]],
                       region: str | None) -> None:
    """Conversations, messages and identifiers in the store equal what went in."""
    for c in convs:
        data, _ = records.canonical_record(canonical.loads(canonical.dumps(c)))
        row = conn.execute("SELECT id, record, message_count FROM conversations "
                           "WHERE source = ? AND conversation_id = ?",
                           (source, c["conversation_id"])).fetchone()
        assert row is not None, c["conversation_id"]
        assert row[1].encode("utf-8") == data, "stored canonical JSON differs from input"
        msgs = conn.execute("SELECT message_id, at, sender, text FROM messages "
                            "WHERE conversation = ? ORDER BY position", (row[0],)).fetchall()
        want = canonical.loads(data)["messages"]
        assert msgs == [(m["id"], m["at"], m["from"], m["text"]) for m in want]
        got = {(k, v) for k, v in conn.execute(
            "SELECT kind, value FROM identifiers WHERE conversation = ?", (row[0],))}
        assert got == _expected_identifiers(c, region)


# -- what goes in comes out ----------------------------------------------------------------

def test_sample_ingested_equals_input(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    convs = [json.loads(line) for line in SAMPLE.read_text("utf-8").splitlines() if line]
    Chain(pair, outbox(media_root)).seal(convs)

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert out.status == "ingested" and out.exit_code == 0
    assert out.counts["conversations"] == 6 and out.counts["messages"] == 18
    with open_store(pair) as conn:
        assert_store_holds(conn, "web", convs, "GB")
        consistent(conn)
        mentions = {(k, v) for k, v in conn.execute("SELECT kind, value FROM mentions")}
        assert ("email", "mara.quint@example.org") in mentions  # written "MARA.QUINT@..."
        assert ("phone", "+447700900123") in mentions  # written "07700 900123"


CORPUS_SOURCES = {
    "slack": ["slack/slack_export.zip"],
    "botframework": ["botframework"],
    "whatsapp": ["whatsapp"],
    "telegram": ["telegram"],
    "messenger": ["facebook_messenger/facebook_chat.json", "instagram_messenger/testlog.json"],
    "rasa": ["rasa"],
    "intercom": ["intercom"],
    "freshdesk": ["freshdesk_webchat"],
}


@pytest.mark.parametrize("fmt", sorted(CORPUS_SOURCES))
def test_corpus_format_exported_then_ingested(tmp_path: Path, fmt: str) -> None:
    """The real exporter seals a corpus export; the vault holds exactly what it read."""
    paths = [CORPUS / p for p in CORPUS_SOURCES[fmt]]
    if not all(p.exists() for p in paths):
        pytest.skip(f"corpus for {fmt} not present")
    try:
        sources.module(fmt)
    except ModuleNotFoundError:
        pytest.skip(f"no {fmt} reader yet")
    exporter = pytest.importorskip("vault.exporter")
    site = export_kit.make_site(tmp_path, convs=[])
    for i, path in enumerate(paths):
        export_kit.add_source(site, f"{fmt}-{i}", path, fmt)
    report = exporter.run(site.exporter.path, media=site.stick)
    assert report.exit_code == 0, report

    outcomes = ingest.ingest_media(site.vaults[0].path, site.stick)

    assert outcomes and all(o.status == "ingested" for o in outcomes), outcomes
    conn = store.open_store(site.vaults[0].path / store.FILE_NAME)
    try:
        for i, path in enumerate(paths):
            opts = sources.ReadOptions(source=f"{fmt}-{i}")
            read = list(sources.read(path, fmt, opts))
            assert read, f"the {fmt} reader found nothing in {path}"
            latest = {c["conversation_id"]: c for c in read}
            assert_store_holds(conn, f"{fmt}-{i}", list(latest.values()), None)
        assert count(conn, "conversations") == sum(
            len({c["conversation_id"] for c in sources.read(p, fmt, sources.ReadOptions())})
            for p in paths)
        consistent(conn)
    finally:
        conn.close()


def test_receipts_signed_on_media_and_kept_at_home(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    sealed = Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"])])

    [out] = ingest.ingest_media(pair.vault_path, media_root, media_label="STICK-7")

    [on_media] = receipts.on_media(media_root)
    r = receipts.verify_file(on_media, pair.exporter.trust())
    assert r.status == "ingested" and r.bundle_sha256 == sealed.sha256
    assert r.body["source"] == "web" and r.body["sequence"] == 1
    assert r.body["counts"]["conversations"] == 1 and r.body["counts"]["messages"] == 1
    assert r.vault == pair.vault.public().fingerprint
    with open_store(pair) as conn:
        from vault import audit

        assert r.body["audit_head"] == audit.head(conn)
        assert conn.execute("SELECT media_label FROM bundles").fetchone()[0] == "STICK-7"
    home_copies = list((pair.vault_path / "receipts").glob("*.receipt.json"))
    assert len(home_copies) == 1
    assert receipts.verify_file(home_copies[0], pair.exporter.trust()).bundle_sha256 == \
        sealed.sha256
    assert (pair.vault_path / "archive" / "web" / "web-00000001.cvb").read_bytes() == \
        sealed.path.read_bytes()
    assert staging.pending(pair.vault_path) == []


# -- idempotence -------------------------------------------------------------------------

def _history(pair: Pair, folder: Path) -> list[Path]:
    """Bundles in which conversations appear, grow, change and carry attachments."""
    blob_a, blob_b = b"scan of a receipt " * 400, os.urandom(3000)
    sha_a, sha_b = hashlib.sha256(blob_a).hexdigest(), hashlib.sha256(blob_b).hexdigest()
    att = {"sha256": sha_a, "name": "receipt.png", "type": "image/png", "size": len(blob_a)}
    c1 = conv("c1", ["my order 4471 is late"])
    c1_grown = conv("c1", ["my order 4471 is late", "call me on 07700 900456"])
    c2 = conv("c2", ["Zoë asks about the café"], email="zoe@example.org", phone=None)
    c2_changed = conv("c2", ["Zoë asks about the café (edited)"], email="zoe@example.org",
                      phone=None)
    c3 = conv("c3", ["photo attached"])
    c3["messages"][0]["attachments"] = [att]
    ch = Chain(pair, folder)
    return [ch.seal([c1, c2], source="web").path,
            ch.seal([c1_grown, c3], source="web", blobs={sha_a: blob_a}).path,
            ch.seal([c2_changed], source="web", blobs={sha_a: blob_a, sha_b: blob_b}).path,
            ch.seal([conv("x1", ["其他来源的消息"])], source="app").path]


def _fresh_vault(template: Path, root: Path) -> Path:
    target = root / f"vault-{len(list(root.glob('vault-*')))}"
    shutil.copytree(template, target)
    return target


def _ingest_in_order(vault: Path, files: list[Path]) -> None:
    for f in files:
        [staged] = staging.stage_files(vault, [f])
        [out] = ingest.ingest_staged(vault, [staged])
        assert out.status in ("ingested", "duplicate"), out.reason


def test_same_bundles_any_order_twice_give_the_same_store(pair: Pair, tmp_path: Path) -> None:
    files = _history(pair, tmp_path / "bundles")
    template = tmp_path / "template"
    shutil.copytree(pair.vault_path, template)
    orders = [files, files[::-1], [files[2], files[0], files[3], files[1]]]
    rng = random.Random(4)
    orders += [rng.sample(files, len(files)) for _ in range(2)]

    dumps = []
    for order in orders:
        vault = _fresh_vault(template, tmp_path)
        _ingest_in_order(vault, order + order)
        with store.open_store(vault / store.FILE_NAME) as conn:
            consistent(conn)
            dumps.append(store.dump(conn))

    assert all(d == dumps[0] for d in dumps[1:])
    by_id = {c["conversation_id"]: c for c in dumps[0]["conversations"]}
    assert [m["text"] for m in by_id["c1"]["messages"]] == ["my order 4471 is late",
                                                          "call me on 07700 900456"]
    assert by_id["c2"]["messages"][0]["text"].endswith("(edited)")
    assert len(dumps[0]["attachments"]) == 2
    assert {a["sha256"] for a in dumps[0]["attachments"]} == \
        {a["content_sha256"] for a in dumps[0]["attachments"]}
    assert [(r["message_id"], r["name"]) for r in by_id["c3"]["attachment_refs"]] == \
        [("m0", "receipt.png")]


def test_grown_conversation_is_updated_never_doubled(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["first"])])
    ingest.ingest_media(pair.vault_path, media_root)
    ch.seal([conv("c1", ["first", "second", "mail me: new.address@example.com"])])

    outs = ingest.ingest_media(pair.vault_path, media_root)

    assert [o.status for o in outs] == ["duplicate", "ingested"]
    assert outs[1].counts["updated"] == 1 and outs[1].counts["new"] == 0
    with open_store(pair) as conn:
        assert count(conn, "conversations") == 1
        assert count(conn, "messages") == 3 and count(conn, "messages_fts") == 3
        assert conn.execute("SELECT value FROM mentions WHERE kind = 'email'").fetchall() == \
            [("new.address@example.com",)]
        assert len(store.search(conn, "new.address@example.com")) == 1
        assert store.search(conn, "first")[0].message_id == "m0"
        consistent(conn)


def test_unchanged_conversation_is_left_alone(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["same"]), conv("c2", ["a"])])
    ch.seal([conv("c1", ["same"]), conv("c2", ["a", "b"])])

    outs = ingest.ingest_media(pair.vault_path, media_root)

    assert outs[1].counts["unchanged"] == 1 and outs[1].counts["updated"] == 1
    with open_store(pair) as conn:
        assert conn.execute("SELECT bundle_sequence FROM conversations ORDER BY "
                            "conversation_id").fetchall() == [(2,), (2,)]


# -- the chain and every refusal ----------------------------------------------------------

def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_gap_replay_fork_untrusted_corrupted_on_one_stick(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    box = outbox(media_root)
    ch = Chain(pair, box)
    ch.seal([conv("c1", ["one"])], source="web")                       # web #1
    web2 = ch.seal([conv("c2", ["two"])], source="web", name="later.cvb.hold")
    ch.seal([conv("c3", ["three"])], source="web")                     # web #3: gap
    ch.seal([conv("f1", ["forked"])], source="web", sequence=1, prev=None,
            name="web-00000001z.cvb")                              # fork of #1
    stranger = make_pair(tmp_path / "stranger")
    Chain(stranger, box).seal([conv("s1", ["who am I"])], source="aaa-untrusted")
    bad = Chain(pair, box).seal([conv("b1", ["soon broken"])], source="broken")
    _corrupt(bad.path)
    Chain(pair, box).seal([conv("z1", ["last but fine"])], source="zzz")

    outs = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, media_root)}

    assert outs["web-00000001.cvb"].status == "ingested"
    gap = outs["web-00000003.cvb"]
    assert gap.status == "ingested" and "#2" in (gap.reason or "") and "gap" in gap.reason
    fork = outs["web-00000001z.cvb"]
    assert (fork.status, fork.code, fork.exit_code) == ("quarantined", "fork", 4)
    untrusted = outs["aaa-untrusted-00000001.cvb"]
    assert (untrusted.status, untrusted.code, untrusted.exit_code) == \
        ("quarantined", "untrusted_signer", 4)
    broken = outs["broken-00000001.cvb"]
    assert (broken.status, broken.exit_code) == ("quarantined", 3)
    assert outs["zzz-00000001.cvb"].status == "ingested"

    trust = pair.exporter.trust()
    on_media = {receipts.verify_file(p, trust).body["bundle_file"]: receipts.verify_file(
        p, trust) for p in receipts.on_media(media_root)}
    assert {name: r.status for name, r in on_media.items()} == \
        {name: o.status for name, o in outs.items()}
    assert on_media["web-00000001z.cvb"].body["reason"].startswith("fork:")
    kept = sorted(p.name for p in (pair.vault_path / "quarantine").iterdir())
    assert len([k for k in kept if k.endswith(".cvb")]) == 3
    assert len([k for k in kept if k.endswith(".reason.json")]) == 3
    with open_store(pair) as conn:
        assert {r[0] for r in conn.execute("SELECT conversation_id FROM conversations")} == \
            {"c1", "c3", "z1"}
        assert count(conn, "quarantine") == 3
        assert chain.gaps(conn) == {"web": [(2, 2)]}

    # The same stick again: good ones are replays, bad ones stay quarantined once.
    again = {o.bundle_file: o.status for o in ingest.ingest_media(pair.vault_path, media_root)}
    assert again["web-00000001.cvb"] == again["web-00000003.cvb"] == "duplicate"
    assert again["web-00000001z.cvb"] == "quarantined"
    # The missing bundle arrives: the gap closes.
    web2.path.rename(box / "web-00000002.cvb")
    third = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, media_root)}
    assert third["web-00000002.cvb"].status == "ingested"
    assert third["web-00000002.cvb"].reason is None
    with open_store(pair) as conn:
        assert count(conn, "quarantine") == 3
        assert chain.gaps(conn) == {}
        consistent(conn)


@pytest.mark.parametrize("case", ["prev-mismatch", "restart", "first-with-prev"])
def test_chain_conflicts_are_refused_as_forks(pair: Pair, tmp_path: Path, case: str) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    first = ch.seal([conv("c1", ["one"])])
    if case == "prev-mismatch":
        ch.seal([conv("c2", ["two"])], prev="ab" * 32)
    elif case == "restart":
        ch.seal([conv("c2", ["two"])], prev=None)
    else:
        first.path.unlink()
        ch.seal([conv("c1", ["one"])], sequence=1, prev="ef" * 32)

    outs = ingest.ingest_media(pair.vault_path, media_root)

    refused = [o for o in outs if o.status == "quarantined"]
    assert len(refused) == 1 and refused[0].code == "fork" and refused[0].exit_code == 4
    assert [o.status for o in outs if o is not refused[0]] in ([], ["ingested"])


def test_predecessor_arriving_late_must_be_the_one_chained_to(pair: Pair,
                                                              tmp_path: Path) -> None:
    """A #1 that the #2 already held does not name is a rolled-back history."""
    ch = Chain(pair, tmp_path / "bundles")
    ch.seal([conv("c1", ["one"])])
    two = ch.seal([conv("c2", ["two"])])
    other_one = ch.seal([conv("c1", ["rewritten"])], sequence=1, prev=None, name="other.cvb")
    _ingest_in_order(pair.vault_path, [two.path])

    [out] = ingest.ingest_staged(pair.vault_path,
                                 staging.stage_files(pair.vault_path, [other_one.path]))

    assert (out.status, out.code) == ("quarantined", "fork")
    assert "#2 held here follows" in (out.reason or "")


def test_bundle_for_another_vault_and_restore_kind_are_refused(pair: Pair,
                                                                tmp_path: Path) -> None:
    from vault.bundle import BundleWriter

    media_root = stick(tmp_path / "stick")
    other = make_pair(tmp_path / "other")
    t = other.vault.trust()
    t.trust(pair.exporter.public_key.read_text(), "exporter")
    t.save()
    Chain(pair, outbox(media_root)).seal([conv("c1", ["for the vault"])])
    w = BundleWriter(outbox(media_root) / "restore-00000001.cvb", pair.exporter.identity(),
                     [pair.vault.public()], kind="restore", source="restore", sequence=1)
    w.finish()

    outs = ingest.ingest_media(other.vault_path, media_root)

    codes = {o.bundle_file: o.code for o in outs}
    assert codes == {"web-00000001.cvb": "not_a_recipient",
                     "restore-00000001.cvb": "malformed_header"}


def test_one_invalid_record_refuses_the_whole_bundle(pair: Pair, tmp_path: Path) -> None:
    from vault.bundle import BundleWriter

    media_root = stick(tmp_path / "stick")
    good = conv("c1", ["fine"])
    data, summary = records.canonical_record(good)
    w = BundleWriter(outbox(media_root) / "web-00000001.cvb", pair.exporter.identity(),
                     [pair.vault.public()], source="web", sequence=1)
    w.add_record(data, summary)
    bad = dict(good, conversation_id="c2")
    bad["messages"] = [dict(good["messages"][0], **{"from": "nobody"})]
    w.add_record(canonical.dumps(bad), summary)
    w.finish()

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert (out.status, out.code, out.exit_code) == ("quarantined", "invalid_record", 3)
    assert "record 2" in (out.reason or "")
    with open_store(pair) as conn:
        assert count(conn, "conversations") == count(conn, "bundles") == 0
        assert count(conn, "messages_fts") == 0


# -- normalisation, tombstones, retention, attachments -----------------------------------

@pytest.mark.parametrize("context,default,expected", [
    ({"phone_region": "US"}, "GB", {("phone", "+12025550147")}),
    ({}, "GB", {("phone", "+442025550147")}),
    ({"phone_region": "UK"}, "", {("phone", "+442025550147")}),
    ({}, "", {("phone_unparsed", "2025550147")}),
])
def test_phone_region_bundle_then_vault_then_none(pair: Pair, tmp_path: Path,
                                                  context: dict[str, str], default: str,
                                                  expected: set[tuple[str, str]]) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace('phone_region = "GB"',
                                           f'phone_region = "{default}"'))
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root), context=context).seal(
        [conv("c1", ["call me"], phone="202 555 0147", email=None)])

    ingest.ingest_media(pair.vault_path, media_root)

    with open_store(pair) as conn:
        got = {(k, v) for k, v in conn.execute("SELECT kind, value FROM identifiers "
                                               "WHERE kind LIKE 'phone%'")}
    assert got == expected


def test_tombstoned_identifiers_never_come_back(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("c1", ["hello"], email="Erased.Person@Example.org"),
        conv("c2", ["my number is +44 7700 900999"], email="kept@example.org", phone=None),
        conv("c3", ["nothing to see"], email="kept@example.org", phone=None),
        conv("c4", ["bye"], email="kept@example.org", phone=None)])
    conn = open_store(pair)
    try:
        key = tombstones.load_key(pair.vault_path, conn)
        with store.transaction(conn):
            tombstones.add(conn, key, "email", tombstones.normalise(
                "email", "erased.person@example.org"))
            tombstones.add(conn, key, "phone", tombstones.normalise("phone", "07700 900999",
                                                                    "GB"))
            tombstones.add(conn, key, "conversation",
                           tombstones.conversation_value("web", "c4"))
    finally:
        conn.close()

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    # c2 only mentions the erased number: kept, with the number redacted (vault.tombstones)
    assert out.counts["tombstoned"] == 2 and out.counts["new"] == 2
    assert out.counts["redacted"] == 1
    with open_store(pair) as conn:
        assert [r[0] for r in conn.execute("SELECT conversation_id FROM conversations "
                                           "ORDER BY conversation_id")] == ["c2", "c3"]
        texts = [t for (t,) in conn.execute("SELECT text FROM messages")]
        assert "my number is [erased phone]" in texts
        assert conn.execute("SELECT count(*) FROM mentions").fetchone()[0] == 0
        stored = conn.execute("SELECT hash FROM tombstones").fetchall()
        assert all("erased" not in h for (h,) in stored)


def test_identifier_key_missing_or_replaced_is_refused(pair: Pair, tmp_path: Path) -> None:
    from vault.errors import BadKeyFile

    conn = open_store(pair)
    try:
        tombstones.load_key(pair.vault_path, conn)
        key_file = pair.vault_path / "keys" / tombstones.KEY_FILE
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key_file.write_text(os.urandom(32).hex())
        with pytest.raises(BadKeyFile, match="does not belong"):
            tombstones.load_key(pair.vault_path, conn)
        key_file.unlink()
        with pytest.raises(BadKeyFile, match="missing"):
            tombstones.load_key(pair.vault_path, conn)
    finally:
        conn.close()


def test_retention_expiry_from_source_or_default(pair: Pair, tmp_path: Path) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace("retention_days = 0", "retention_days = 10")
                   + '\n[sources."web"]\nretention_days = 30\n')
    media_root = stick(tmp_path / "stick")
    c = conv("c1", ["a"], at="2024-03-14T09:05:12Z", ended_at="2024-03-20T10:00:00Z")
    Chain(pair, outbox(media_root)).seal([c], source="web")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["b"])], source="app")

    ingest.ingest_media(pair.vault_path, media_root)

    with open_store(pair) as conn:
        rows = dict(conn.execute("SELECT source, retention_until FROM conversations"))
    assert rows == {"web": "2024-04-19T10:00:00Z", "app": "2024-03-24T09:05:12Z"}


def test_attachments_are_stored_once_compressed(pair: Pair, tmp_path: Path) -> None:
    content = b"the same attachment, very compressible " * 2000 + os.urandom(2_500_000)
    sha = hashlib.sha256(content).hexdigest()
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["see attached"])], blobs={sha: content})
    ch.seal([conv("c2", ["again"])], blobs={sha: content})

    outs = ingest.ingest_media(pair.vault_path, media_root)

    assert outs[0].counts["blobs_new"] == 1 and outs[1].counts["blobs_known"] == 1
    with open_store(pair) as conn:
        assert count(conn, "attachments") == 1
        size, chunks, stored = conn.execute("SELECT size, chunks, stored_bytes FROM "
                                            "attachments").fetchone()
        assert size == len(content) and chunks == 3 and stored < size
        assert b"".join(store.read_attachment(conn, sha)) == content


# -- staging and the command line ---------------------------------------------------------

def test_staging_is_resumable_and_skips_what_is_odd(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    box = outbox(media_root)
    ch = Chain(pair, box)
    one = ch.seal([conv("c1", ["one"])])
    ch.seal([conv("c2", ["two"])])
    (box / "evil-00000001.cvb").symlink_to(one.path)
    (box / ".web-00000003.cvb.tmp-123").write_bytes(b"half a bundle")
    first = staging.stage_from_media(pair.vault_path, media_root)
    partial = pair.vault_path / "staging" / f".web-00000002.cvb{staging.atomic.TMP_MARK}99"
    partial.write_bytes(b"cut short by a pulled stick")
    inode = first[0].path.stat().st_ino

    again = staging.stage_from_media(pair.vault_path, media_root)

    assert [s.bundle_file for s in again] == ["web-00000001.cvb", "web-00000002.cvb"]
    assert again == first and again[0].path.stat().st_ino == inode
    assert not partial.exists()
    assert again[0].sha256 == hashlib.sha256(one.path.read_bytes()).hexdigest()
    assert len(staging.pending(pair.vault_path)) == 2
    outs = ingest.ingest_staged(pair.vault_path, again)
    assert [o.status for o in outs] == ["ingested", "ingested"]
    assert staging.pending(pair.vault_path) == []


def test_cli_ingest_media_and_bare_file(pair: Pair, tmp_path: Path, cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["one"])])
    loose = Chain(pair, tmp_path / "loose").seal([conv("d1", ["loose"])], source="desk")
    stranger = make_pair(tmp_path / "stranger")
    Chain(stranger, outbox(media_root)).seal([conv("s1", ["x"])], source="zz")

    res = cli("vault", "ingest", media_root, loose.path, "--home", pair.vault_path, "--json")

    assert res.code == 4, res.err
    doc = res.json()
    assert [o["status"] for o in doc["outcomes"]] == ["ingested", "quarantined", "ingested"]
    assert doc["summary"]["ingested"] == 2 and doc["summary"]["quarantined"] == 1
    assert len(receipts.on_media(media_root)) == 2
    desk = [p for p in doc["outcomes"][2]["receipts"]]
    assert len(desk) == 1 and desk[0].startswith(str(pair.vault_path / "receipts"))
    assert loose.path.exists(), "a bundle given on the command line is never removed"

    again = cli("vault", "ingest", media_root, "--home", pair.vault_path)
    assert again.code == 4
    assert "duplicate" in again.out and "1 quarantined" in again.err


def test_cli_ingest_missing_path_is_a_media_error_naming_it(pair: Pair, tmp_path: Path,
                                                            cli: Any) -> None:
    """A stick that is not mounted (or a mistyped path) is exit 5, like any missing media."""
    missing = tmp_path / "nope"
    res = cli("vault", "ingest", missing, "--home", pair.vault_path)
    assert res.code == 5 and f"{missing}: no such file or folder" in res.err

    doc = cli("vault", "ingest", missing, "--home", pair.vault_path, "--json")
    assert doc.code == 5


def test_delete_ingested_removes_only_receipted_bundles(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["one"])])
    bad = ch.seal([conv("c2", ["two"])])
    _corrupt(bad.path)

    outs = ingest.ingest_media(pair.vault_path, media_root, delete_ingested=True)

    assert [o.status for o in outs] == ["ingested", "quarantined"]
    assert sorted(p.name for p in outbox(media_root).iterdir()) == ["web-00000002.cvb"]
    assert len(receipts.on_media(media_root)) == 2


def test_progress_bar_does_not_change_the_outcome(pair: Pair, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv(f"c{i}", ["x"]) for i in range(450)])

    [out] = ingest.ingest_media(pair.vault_path, media_root, progress=True)

    assert out.status == "ingested" and out.counts["new"] == 450
    captured = capsys.readouterr()
    assert captured.out == "" and "450/450" in captured.err
