"""Restore bundles: corpus round trips, refusals, exclusions, parts, media."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import export_kit
from conftest import CORPUS, Pair, make_pair
from vault import audit, bundle, canonical, home, records, sources, store, tombstones
from vault_kit import Chain, conv, outbox, stick

SAMPLE = Path(__file__).resolve().parents[1] / "vault" / "samples" / "conversations.jsonl"

CORPUS_SOURCES = {
    "jsonl": [SAMPLE],
    "slack": [CORPUS / "slack/slack_export.zip"],
    "botframework": [CORPUS / "botframework"],
    "whatsapp": [CORPUS / "whatsapp"],
    "telegram": [CORPUS / "telegram"],
    "messenger": [CORPUS / "facebook_messenger/facebook_chat.json",
                  CORPUS / "instagram_messenger/testlog.json"],
    "rasa": [CORPUS / "rasa"],
    "intercom": [CORPUS / "intercom"],
    "freshdesk": [CORPUS / "freshdesk_webchat"],
}
NATIVE = {"jsonl", "slack", "botframework"}


def sealed_by_exporter(site: export_kit.Site) -> dict[str, dict[str, bytes]]:
    """What the exporter sealed, per source: the last version of each conversation."""
    out: dict[str, dict[str, bytes]] = {}
    for name in export_kit.bundle_files(site.stick_outbox):
        meta, rows = export_kit.open_bundle(site.vaults[0], site.stick_outbox / name)
        for r in rows:
            out.setdefault(meta["source"], {})[r["conversation_id"]] = canonical.dumps(r)
    return out


def create(cli: Any, vault: Path, to: Path, out: Path, *args: str | Path) -> dict[str, Any]:
    res = cli("restore", "create", "--home", vault, "--to", to, "--out", out, "--json", *args)
    assert res.code == 0, res.err
    return res.json()


def parts(made: dict[str, Any]) -> list[str]:
    return [p["path"] for p in made["parts"]]


@pytest.mark.parametrize("fmt", sorted(CORPUS_SOURCES))
def test_corpus_round_trip_export_ingest_restore_open(tmp_path: Path, fmt: str,
                                                      cli: Any) -> None:
    """Canonical records come back byte-identical; native output reads back the same."""
    paths = CORPUS_SOURCES[fmt]
    if not all(p.exists() for p in paths):
        pytest.skip(f"corpus for {fmt} not present")
    from vault import exporter, ingest

    site = export_kit.make_site(tmp_path, convs=[])
    names = [f"{fmt}-{i}" for i in range(len(paths))]
    for name, path in zip(names, paths):
        export_kit.add_source(site, name, path, fmt)
    assert exporter.run(site.exporter.path, media=site.stick).exit_code == 0
    sealed = sealed_by_exporter(site)
    vault = site.vaults[0].path
    assert all(o.status == "ingested" for o in ingest.ingest_media(vault, site.stick))

    for name, path in zip(names, paths):
        made = create(cli, vault, site.exporter.public_key, tmp_path / f"r-{name}",
                      "--source", name)
        opened = tmp_path / f"opened-{name}"
        res = cli("restore", "open", *parts(made), "--home", site.exporter.path,
                  "--out", opened, "--format", "native", "--json")
        assert res.code == 0, res.err

        back = (opened / f"{name}.jsonl").read_bytes().splitlines()
        assert sorted(back) == sorted(sealed[name].values())
        assert made["conversations"] == len(sealed[name]) > 0
        info = res.json()["sources"][name]
        if fmt in NATIVE:
            assert info["native"] == f"native/{name}"
            again = list(sources.read(opened / "native" / name, fmt,
                                      sources.ReadOptions(source=name)))
            original = {c["conversation_id"]: c for c in sources.read(
                path, fmt, sources.ReadOptions(source=name))}
            assert sorted(canonical.dumps(c) for c in again) == \
                sorted(canonical.dumps(c) for c in original.values())
        else:
            assert info["native"] is None


# -- refusals -----------------------------------------------------------------------------------

@pytest.fixture
def restored(pair: Pair, tmp_path: Path, cli: Any) -> tuple[Pair, list[str]]:
    """A vault holding three conversations and a restore set of them for the exporter."""
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"]), conv("c2", ["again"]),
                                          conv("c3", ["bye"], email="other@example.org")])
    from vault import ingest

    ingest.ingest_media(pair.vault_path, media_root)
    made = create(cli, pair.vault_path, pair.exporter.public_key, tmp_path / "restore",
                  "--source", "web")
    return pair, parts(made)


def test_flipped_byte_is_refused_and_nothing_written(restored: Any, tmp_path: Path,
                                                     cli: Any) -> None:
    pair, [part] = restored
    data = bytearray(Path(part).read_bytes())
    for where in (100, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"bad-{where}.cvb"
        flipped = bytearray(data)
        flipped[where] ^= 0x40
        bad.write_bytes(bytes(flipped))
        out = tmp_path / f"out-{where}"
        res = cli("restore", "open", bad, "--home", pair.exporter_path, "--out", out, "--json")
        assert res.code == 3, (where, res.err)
        assert res.json()["exit_code"] == 3
        assert not out.exists(), "a refused open leaves no folder behind"


def test_untrusted_vault_is_refused_with_policy_code(restored: Any, tmp_path: Path,
                                                    cli: Any) -> None:
    pair, [part] = restored
    stranger = home.create("exporter", tmp_path / "stranger", "other-exporter")
    # the stranger can decrypt (it is a recipient) but does not trust the vault
    made = create(cli, pair.vault_path, stranger.public_key, tmp_path / "r2", "--source", "web")
    res = cli("restore", "open", *parts(made), "--home", stranger.path, "--out",
              tmp_path / "o", "--json")
    assert res.code == 4 and res.json()["error"] == "untrusted_signer"
    assert not (tmp_path / "o").exists()


def test_a_refused_create_leaves_no_folder(restored: Any, tmp_path: Path, cli: Any) -> None:
    pair, _ = restored
    out = tmp_path / "new" / "restore"
    res = cli("restore", "create", "--to", pair.exporter.public_key, "--conversation",
              "web/no-such-conversation", "--out", out, "--home", pair.vault_path)
    assert res.code == 2, res.err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    res = cli("restore", "create", "--to", pair.exporter.public_key, "--conversation",
              "web/no-such-conversation", "--out", kept, "--home", pair.vault_path)
    assert res.code == 2 and kept.is_dir(), "a folder that was there stays"


def test_bundle_for_another_recipient_is_refused(restored: Any, tmp_path: Path,
                                                 cli: Any) -> None:
    pair, _ = restored
    other = home.create("exporter", tmp_path / "other", "other-site")
    made = create(cli, pair.vault_path, other.public_key, tmp_path / "r3", "--source", "web")
    res = cli("restore", "open", *parts(made), "--home", pair.exporter_path, "--out",
              tmp_path / "o", "--json")
    assert res.code == 3 and res.json()["error"] == "not_a_recipient"
    assert not (tmp_path / "o" / "web.jsonl").exists()


def test_an_export_bundle_is_not_a_restore_bundle(pair: Pair, tmp_path: Path) -> None:
    from vault import restoreopen
    from vault.errors import MalformedHeader

    t = pair.exporter.trust()
    t.trust(pair.exporter.public_key.read_text(), "vault")  # trust it, to reach the kind check
    sealed = Chain(pair, tmp_path / "b").seal([conv("c1", ["x"])])
    with pytest.raises(MalformedHeader, match="not a restore bundle"):
        restoreopen.open_bundles([sealed.path], pair.vault.identity(), t, tmp_path / "o")


def test_open_refuses_to_overwrite(restored: Any, tmp_path: Path, cli: Any) -> None:
    pair, plist = restored
    out = tmp_path / "o"
    assert cli("restore", "open", *plist, "--home", pair.exporter_path, "--out", out).code == 0
    res = cli("restore", "open", *plist, "--home", pair.exporter_path, "--out", out)
    assert res.code == 2 and "already exists" in res.err


def test_a_missing_part_is_a_media_problem_and_a_folder_a_usage_one(
        restored: Any, tmp_path: Path, cli: Any) -> None:
    pair, _ = restored
    out = tmp_path / "nothing"
    res = cli("restore", "open", tmp_path / "gone.cvb", "--home", pair.exporter_path,
              "--out", out, "--json")
    assert res.code == 5 and res.json()["error"] == "media_missing"
    assert "gone.cvb" in res.err
    assert cli("restore", "open", tmp_path, "--home", pair.exporter_path,
               "--out", out).code == 2
    assert not out.exists()


# -- what is left out, what is chosen ------------------------------------------------------------

def test_tombstoned_subject_is_left_out_and_audited(pair: Pair, tmp_path: Path,
                                                   cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("c1", ["hello"], email="erased@example.org"),
        conv("c2", ["hi"], email="kept@example.org", phone=None)])
    from vault import ingest

    ingest.ingest_media(pair.vault_path, media_root)
    conn = store.open_store(pair.vault_path / store.FILE_NAME)
    try:
        key = tombstones.load_key(pair.vault_path, conn)
        with store.transaction(conn):
            tombstones.add(conn, key, "email", "erased@example.org")
    finally:
        conn.close()

    made = create(cli, pair.vault_path, pair.exporter.public_key, tmp_path / "r",
                  "--source", "web", "--purpose", "ticket 42")
    assert made["conversations"] == 1 and made["excluded"]["tombstoned"] == 1
    res = cli("restore", "open", *parts(made), "--home", pair.exporter_path, "--out",
              tmp_path / "o")
    assert res.code == 0
    back = [json.loads(x) for x in (tmp_path / "o" / "web.jsonl").read_text().splitlines()]
    assert [c["conversation_id"] for c in back] == ["c2"]
    conn = store.open_store(pair.vault_path / store.FILE_NAME)
    try:
        [entry] = [e for e in audit.entries(conn) if e["action"] == "restore.create"]
    finally:
        conn.close()
    assert entry["purpose"] == "ticket 42"
    detail = json.loads(entry["detail"])
    assert detail["excluded"]["tombstoned"] == 1 and detail["conversations"] == 1
    assert "erased@example.org" not in entry["detail"] and "kept@" not in entry["detail"]


def test_selection_by_subject_conversation_and_window(pair: Pair, tmp_path: Path,
                                                      cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("c1", ["hello"], email="Mara@Example.org", at="2024-03-01T10:00:00Z"),
        conv("c2", ["write to mara@example.org"], email="x@example.org", phone=None,
             at="2024-03-10T10:00:00Z"),
        conv("c3", ["nothing"], email="y@example.org", phone=None, at="2024-04-01T10:00:00Z")])
    from vault import ingest

    ingest.ingest_media(pair.vault_path, media_root)

    def ids(*args: str) -> list[str]:
        out = tmp_path / f"sel-{len(list(tmp_path.iterdir()))}"
        made = create(cli, pair.vault_path, pair.exporter.public_key, out, *args)
        if not made["parts"]:
            return []
        opened = out / "opened"
        assert cli("restore", "open", *parts(made), "--home", pair.exporter_path,
                   "--out", opened).code == 0
        return sorted(json.loads(x)["conversation_id"]
                      for x in (opened / "web.jsonl").read_text().splitlines())

    assert ids("--subject-email", "MARA@example.ORG") == ["c1", "c2"]
    typo = cli("restore", "create", "--home", pair.vault_path, "--to",
               pair.exporter.public_key, "--out", tmp_path / "typo", "--subject-email",
               "mara@exampel.org")
    assert typo.code == 0 and "no conversation of the --subject-email given is held" in typo.err
    assert ids("--conversation", "c3", "--conversation", "c1") == ["c1", "c3"]
    assert ids("--conversation", "web/c2") == ["c2"]  # SOURCE/ID, as subject find lists it
    for given in (["c1", "c9"], ["web/c9"], ["other/c1"]):
        args = [a for g in given for a in ("--conversation", g)]
        res = cli("restore", "create", "--home", pair.vault_path, "--to",
                  pair.exporter.public_key, "--out", tmp_path / "held", *args)
        # an empty restore set would read as success: a typo or a conversation gone is said
        assert res.code == 2 and "is held" in res.err, (given, res.err)
        assert not list((tmp_path / "held").glob("*.cvb"))
    assert ids("--source", "web", "--since", "2024-03-05", "--until", "2024-03-31") == ["c2"]
    assert ids("--source", "web", "--until", "2024-03-01") == ["c1"]
    assert ids("--source", "web", "--since", "2025-01-01") == []  # known source, no match
    unknown = cli("restore", "create", "--home", pair.vault_path, "--to",
                  pair.exporter.public_key, "--out", tmp_path / "nope", "--source", "nope")
    assert unknown.code == 2 and "no source named 'nope'" in unknown.err  # a typo, not 'none'

    res = cli("restore", "create", "--home", pair.vault_path, "--to", pair.exporter.public_key,
              "--out", tmp_path / "x")
    assert res.code == 2 and "say what to restore" in res.err
    res = cli("restore", "create", "--home", pair.vault_path, "--to", pair.exporter.public_key,
              "--source", "web", "--since", "last tuesday", "--out", tmp_path / "x")
    assert res.code == 2


# -- parts under the size limit, attachments, media ---------------------------------------------

def _noisy(pair: Pair, tmp_path: Path, n: int = 12,
           blob_size: int = 150_000) -> tuple[list[dict[str, Any]], dict]:
    rng = random.Random(7)
    convs = [conv(f"c{i:02d}", [export_kit.noise(rng, 60_000)]) for i in range(n)]
    blob = rng.randbytes(blob_size)
    import hashlib

    sha = hashlib.sha256(blob).hexdigest()
    convs[0]["messages"][0]["attachments"] = [{"sha256": sha, "name": "scan.pdf",
                                               "size": len(blob)}]
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal(convs, blobs={sha: blob})
    from vault import ingest

    ingest.ingest_media(pair.vault_path, media_root)
    return convs, {sha: blob}


def test_split_into_parts_under_the_limit_and_all_needed(pair: Pair, tmp_path: Path,
                                                         cli: Any) -> None:
    convs, blobs = _noisy(pair, tmp_path)
    limit = 300_000
    made = create(cli, pair.vault_path, pair.exporter.public_key, tmp_path / "r",
                  "--source", "web", "--max-bytes", str(limit))
    files = parts(made)
    assert len(files) >= 3
    assert all(Path(f).stat().st_size <= limit for f in files)
    assert made["blobs"] == 1 and made["conversations"] == len(convs)
    assert [bundle.inspect(f)["meta"]["context"]["part"] for f in files] == \
        list(range(1, len(files) + 1))

    res = cli("restore", "open", *files[1:], "--home", pair.exporter_path, "--out",
              tmp_path / "partial", "--json")
    assert res.code == 3 and "part 1 of" in res.json()["message"]
    assert not (tmp_path / "partial" / "web.jsonl").exists()
    res = cli("restore", "open", *files[1:], "--home", pair.exporter_path, "--out",
              tmp_path / "partial", "--partial", "--json")
    assert res.code == 0 and res.json()["missing"]

    res = cli("restore", "open", *reversed(files), "--home", pair.exporter_path, "--out",
              tmp_path / "all", "--json")
    assert res.code == 0, res.err
    back = (tmp_path / "all" / "web.jsonl").read_bytes().splitlines()
    want = [records.canonical_record(canonical.loads(canonical.dumps(c)))[0] for c in convs]
    assert sorted(back) == sorted(want)
    [(sha, blob)] = blobs.items()
    assert (tmp_path / "all" / "attachments" / sha).read_bytes() == blob


def test_max_bytes_limits(pair: Pair, tmp_path: Path, cli: Any) -> None:
    _noisy(pair, tmp_path, n=2, blob_size=300_000)
    for bad in ("1000", str(4 * 1024**3)):
        res = cli("restore", "create", "--home", pair.vault_path, "--to",
                  pair.exporter.public_key, "--source", "web", "--out", tmp_path / "r",
                  "--max-bytes", bad)
        assert res.code == 2, bad
    res = cli("restore", "create", "--home", pair.vault_path, "--to", pair.exporter.public_key,
              "--source", "web", "--out", tmp_path / "r", "--max-bytes", "262144")
    assert res.code == 2 and "raise --max-bytes" in res.err  # c00 + its attachment: too big


def test_media_answers_folder_and_full_media(pair: Pair, tmp_path: Path, cli: Any) -> None:
    from vault import media

    _noisy(pair, tmp_path, n=6)
    stick_root = stick(tmp_path / "out-stick")
    res = cli("restore", "create", "--home", pair.vault_path, "--to", pair.exporter.public_key,
              "--source", "web", "--media", stick_root, "--json")
    assert res.code == 0, res.err
    made = res.json()
    answers = media.folder(stick_root, media.ANSWERS)
    assert [Path(p).parent for p in parts(made)] == [answers] * len(made["parts"])

    with export_kit.tmpfs(tmp_path / "tiny", "200k") as tiny:
        res = cli("restore", "create", "--home", pair.vault_path, "--to",
                  pair.exporter.public_key, "--source", "web", "--media", tiny, "--json")
        assert res.code == 5 and res.json()["error"] == "media_full"
        left = list((tiny / "chatvault" / "answers").iterdir())
        assert left == [], left
    assert not list((pair.vault_path / "staging").glob(".restore-*"))


def test_online_side_without_any_vault_home(pair: Pair, tmp_path: Path, cli: Any,
                                            proc: Any) -> None:
    """restore open runs on a plain exporter home, in a fresh process."""
    other = make_pair(tmp_path / "site2")
    media_root = stick(tmp_path / "stick")
    Chain(other, outbox(media_root)).seal([conv("c1", ["hello"])])
    from vault import ingest

    ingest.ingest_media(other.vault_path, media_root)
    made = create(cli, other.vault_path, other.exporter.public_key, tmp_path / "r",
                  "--source", "web")
    res = proc("restore", "open", *parts(made), "--home", other.exporter_path, "--out",
               tmp_path / "o")
    assert res.code == 0, res.err
    assert (tmp_path / "o" / "web.jsonl").is_file()


def test_restricted_subject_is_left_out_and_mentions_redacted(pair: Pair, tmp_path: Path,
                                                              cli: Any) -> None:
    """Art. 18: the restricted customer's conversation stays home; a mention is redacted."""
    from vault import ingest, restriction
    from vault.subjects import Subject, open_vault

    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([
        conv("c1", ["hello"], email="restricted@example.org", phone=None),
        conv("c2", ["please mail restricted@example.org"], email="x@example.org", phone=None),
        conv("c3", ["unrelated"], email="y@example.org", phone=None)])
    ingest.ingest_media(pair.vault_path, media_root)
    with open_vault(pair.vault_path) as v:
        restriction.add(v, Subject.parse(emails=["restricted@example.org"]), "contested")

    made = create(cli, pair.vault_path, pair.exporter.public_key, tmp_path / "r",
                  "--source", "web")
    assert made["excluded"] == {"tombstoned": 0, "restricted": 1} and made["redacted"] == 1
    assert cli("restore", "open", *parts(made), "--home", pair.exporter_path, "--out",
               tmp_path / "o").code == 0
    text = (tmp_path / "o" / "web.jsonl").read_text()
    back = {json.loads(x)["conversation_id"]: x for x in text.splitlines()}
    assert sorted(back) == ["c2", "c3"]
    assert "restricted@example.org" not in text and "[restricted" in back["c2"]
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:  # nothing changed home
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 3
