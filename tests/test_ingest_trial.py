"""Ingest after a hostile trial: one bad bundle is quarantined, the others keep their receipts.

Bundles here are written by a writer that validates nothing (as an older or
foreign sealer might), so the vault's own checks are what is tested.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from vault import canonical, daemon, ingest, receipts, records, store, tombstones, upsert
from vault.bundle import BundleWriter, file_name
from vault_kit import Chain, conv, count, open_store, outbox, stick


def _raw_bundle(pair: Pair, folder: Path, lines: list[bytes], source: str = "shop") -> Path:
    """A signed bundle of ``lines`` exactly as given: nothing validated while sealing."""
    out = folder / file_name(source, 1)
    w = BundleWriter(out, pair.exporter.identity(), [pair.vault.public()], source=source,
                     sequence=1, context={"phone_region": "GB"})
    for line in lines:
        w.add_record(line, records.Summary("x", 1, 2, 0, None, None))
    return w.finish().path


def _said(pair: Pair, media_root: Path) -> dict[str, Any]:
    trust = pair.exporter.trust()
    return {r.body["bundle_file"]: r.status
            for r in (receipts.verify_file(p, trust) for p in receipts.on_media(media_root))}


def _ingest_cli(cli, pair: Pair, media_root: Path, *more: str) -> Any:
    return cli("vault", "ingest", media_root, "--home", pair.vault_path, *more)


def test_a_timestamp_no_store_can_hold_quarantines_its_bundle_only(pair: Pair, tmp_path: Path,
                                                                   cli) -> None:
    media_root = stick(tmp_path / "stick")
    bad = conv("b2", ["hi"])
    bad["started_at"] = "0000-01-01T00:00:00Z"
    _raw_bundle(pair, outbox(media_root), [canonical.dumps(conv("b1", ["hi"])),
                                           canonical.dumps(bad)])
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"])])

    res = _ingest_cli(cli, pair, media_root, "--json")

    assert res.code == 3, res.out + res.err
    outs = {o["bundle_file"]: o for o in res.json()["outcomes"]}
    refused = outs["shop-00000001.cvb"]
    assert (refused["status"], refused["code"]) == ("quarantined", "invalid_record")
    assert "record 2: field 'started_at'" in refused["reason"]
    assert outs["web-00000001.cvb"]["status"] == "ingested"
    assert _said(pair, media_root) == {"shop-00000001.cvb": "quarantined",
                                       "web-00000001.cvb": "ingested"}
    with open_store(pair) as conn:
        assert [r[0] for r in conn.execute("SELECT conversation_id FROM conversations")] == [
            "c1"]
    # the next insertion does not crash either: the refusal is remembered
    again = _ingest_cli(cli, pair, media_root, "--json")
    assert again.code == 3 and "internal error" not in again.err


def test_an_unexpected_failure_quarantines_one_bundle_and_rolls_it_back(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli,
        caplog: pytest.LogCaptureFixture) -> None:
    media_root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media_root))
    chain.seal([conv("s1", ["one"]), conv("s2", ["two"]), conv("s3", ["boom"])],
               source="shop")
    chain.seal([conv("c1", ["hello"])])
    real = upsert.Loader.add

    def add(self: upsert.Loader, c: dict[str, Any], data: bytes, last_at: str | None) -> str:
        if c["conversation_id"] == "s3":
            raise KeyError("a bug")
        return real(self, c, data, last_at)

    monkeypatch.setattr(upsert.Loader, "add", add)
    with caplog.at_level(logging.ERROR, logger="vault.ingest"):
        res = _ingest_cli(cli, pair, media_root, "--json")

    assert res.code == 3, res.out + res.err
    outs = {o["bundle_file"]: o for o in res.json()["outcomes"]}
    refused = outs["shop-00000001.cvb"]
    assert (refused["status"], refused["code"], refused["exit_code"]) == (
        "quarantined", "ingest_failed", 3)
    assert refused["reason"] == ("ingest_failed: record 3: internal error in ingest: "
                                 "KeyError: 'a bug'")
    assert outs["web-00000001.cvb"]["status"] == "ingested"
    assert _said(pair, media_root) == {"shop-00000001.cvb": "quarantined",
                                       "web-00000001.cvb": "ingested"}
    assert "internal error in ingest (record 3: KeyError: 'a bug')" in caplog.text
    with open_store(pair) as conn:
        assert [r[0] for r in conn.execute("SELECT conversation_id FROM conversations")] == [
            "c1"], "the failed bundle's first records were not rolled back"
        assert count(conn, "bundles") == 1
        assert conn.execute("SELECT code FROM quarantine").fetchall() == [("ingest_failed",)]
    assert list((pair.vault_path / "quarantine").glob("shop-00000001.*.cvb"))


def test_a_bundle_carrying_one_conversation_twice_is_refused(pair: Pair,
                                                             tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    line = canonical.dumps(conv("c1", ["hello"]))
    _raw_bundle(pair, outbox(media_root), [line, canonical.dumps(conv("c2", ["x"])), line])

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert (out.status, out.code, out.exit_code) == ("quarantined", "invalid_record", 3)
    assert "record 3: field 'conversation_id': the same id as record 1" in out.reason
    with open_store(pair) as conn:
        assert count(conn, "conversations") == 0


def test_records_naming_another_source_than_the_header_are_refused(pair: Pair,
                                                                   tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    _raw_bundle(pair, outbox(media_root), [canonical.dumps(conv("c1", ["hi"], source="shop")),
                                           canonical.dumps(conv("c2", ["hi"], source="web"))])

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert (out.status, out.code) == ("quarantined", "invalid_record")
    assert "record 2: field 'source': 'web', but the bundle's header says 'shop'" in out.reason


def _erase_c1(pair: Pair) -> None:
    conn = open_store(pair)
    try:
        key = tombstones.load_key(pair.vault_path, conn)
        with store.transaction(conn):
            tombstones.add(conn, key, "conversation", tombstones.conversation_value("web", "c1"))
    finally:
        conn.close()


def test_conversations_left_out_by_erasure_are_said(pair: Pair, tmp_path: Path, cli,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["a"]), conv("c2", ["b"])])
    _erase_c1(pair)

    res = _ingest_cli(cli, pair, media_root)

    assert res.code == 0, res.err
    assert "2 conv, 1 msg, 1 left out (erased)" in res.out
    assert "1 left out (erased)" in res.err
    res = _ingest_cli(cli, pair, media_root, "--json")  # a duplicate now: nothing left out
    assert res.json()["summary"]["left_out_erased"] == 0
    with caplog.at_level(logging.INFO, logger="vault.daemon"):
        daemon._log_outcomes("sdz", [ingest.Outcome("web-00000001.cvb", "0" * 64, "ingested",
                                                    counts={"tombstoned": 1})])
    assert "1 conversation(s) left out (erased)" in caplog.text


def test_left_out_count_in_json(pair: Pair, tmp_path: Path, cli) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["a"]), conv("c2", ["b"])])
    _erase_c1(pair)

    res = _ingest_cli(cli, pair, media_root, "--json")

    assert res.json()["summary"]["left_out_erased"] == 1
    assert res.json()["outcomes"][0]["counts"]["tombstoned"] == 1
