"""scripts/bench at a toy size: the corpus it generates and the shape of its results.

The benchmark itself is never run in CI; this keeps it working. No timing is
asserted anywhere: only that figures exist, are consistent and compare the
contenders they claim to compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO
from vault import records, sources

sys.path.insert(0, str(REPO / "scripts"))
import bench_corpus  # noqa: E402
import bench_harness  # noqa: E402


def test_corpus_is_deterministic_and_prefix_stable(tmp_path: Path) -> None:
    a = bench_corpus.write_corpus(tmp_path / "a.jsonl", 120_000, seed=3)
    b = bench_corpus.write_corpus(tmp_path / "b.jsonl", 120_000, seed=3)
    small = bench_corpus.write_corpus(tmp_path / "small.jsonl", 30_000, seed=3)
    other = bench_corpus.write_corpus(tmp_path / "other.jsonl", 30_000, seed=4)
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data == (tmp_path / "b.jsonl").read_bytes()
    assert data.startswith((tmp_path / "small.jsonl").read_bytes())
    assert (tmp_path / "other.jsonl").read_bytes() != (tmp_path / "small.jsonl").read_bytes()
    assert (a.bytes, a.conversations, a.messages) == (b.bytes, b.conversations, b.messages)
    assert a.bytes == len(data) >= 120_000 and small.conversations < a.conversations
    assert other.bytes >= 30_000


def test_corpus_records_are_canonical_and_shaped_as_promised(tmp_path: Path) -> None:
    info = bench_corpus.write_corpus(tmp_path / "c.jsonl", 400_000)
    lines = (tmp_path / "c.jsonl").read_bytes().splitlines()
    assert len(lines) == info.conversations
    messages = mentions = bots = 0
    for n, line in enumerate(lines):
        data, summary = records.canonical_line(line, f"line {n}")
        assert data == line  # already canonical, and valid
        conv = json.loads(line)
        assert 8 <= summary.messages <= 16
        customer = next(p for p in conv["participants"] if p["role"] == "customer")
        assert "@" in customer["email"] and customer["phone"].startswith("+44")
        assert any(p["role"] == "agent" for p in conv["participants"])
        bots += any(p["role"] == "bot" for p in conv["participants"])
        messages += summary.messages
        mentions += sum("reach" in m["text"] or "send it to" in m["text"] or
                        "call me back" in m["text"] for m in conv["messages"])
    assert messages == info.messages
    assert 0.002 < mentions / messages < 0.03  # about 1 %
    assert 0.15 < bots / info.conversations < 0.5
    probe = bench_corpus.probe()
    assert (tmp_path / "c.jsonl").read_bytes().count(probe.email.encode()) >= 2


def test_flattened_and_slack_forms_hold_the_same_messages(tmp_path: Path) -> None:
    info = bench_corpus.write_corpus(tmp_path / "c.jsonl", 60_000)
    assert bench_corpus.flatten(tmp_path / "c.jsonl", tmp_path / "m.jsonl") == info.messages
    first = json.loads((tmp_path / "m.jsonl").read_bytes().splitlines()[0])
    assert set(first) == {"conversation_id", "position", "message_id", "at", "sender",
                          "text", "direction"}
    slack = bench_corpus.slack_export(tmp_path / "c.jsonl", tmp_path / "slack", 10**9)
    assert slack["messages"] == info.messages
    convs = list(sources.read(tmp_path / "slack", "slack", sources.ReadOptions(source="s")))
    assert sum(len(c["messages"]) for c in convs) == info.messages
    emails = {p.get("email") for c in convs for p in c["participants"]}
    assert bench_corpus.customer(0).email in emails or len(emails) > 3


@pytest.mark.slow
def test_a_toy_run_measures_seal_and_open_against_the_peers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    code = bench_harness.main(["--size", "toy", "--runs", "1", "--only", "seal,open",
                               "--out", str(tmp_path / "bench"), "--json", str(out), "--keep"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["size"] == "toy" and res["runs"] == 1 and res["groups"] == ["seal", "open"]
    assert res["machine"]["cores"] >= 1 and res["versions"]["chatvault"]
    rows = {r["name"]: r for r in res["rows"]}
    assert {r["group"] for r in res["rows"]} == {"seal", "open"}
    for name in ("chatvault seal --threads 1", "chatvault seal --threads -1",
                 "chatvault verify + open"):
        row = rows[name]
        assert row["kind"] == "chatvault" and row["runs"] == 1
        assert row["seconds_min"] <= row["seconds_median"] <= row["seconds_max"]
        assert row["input_bytes"] == res["corpus"]["bytes"]
        assert row["messages"] == res["corpus"]["messages"]
        assert row["peak_rss_mib"] > 0
        for v in row["versus"]:
            peer = rows[v["peer"]]
            # compared, or skipped with the reason the peer row gives: never silently
            if peer["skipped"]:
                assert v["skipped"] == peer["skipped"]
            else:
                ratio = peer["seconds_median"] / row["seconds_median"]
                assert v["ratio"] == pytest.approx(ratio, rel=1e-3)
    # the bundle the seal rows wrote is a real one: inspectable, with every record
    from vault import bundle

    meta = bundle.inspect(tmp_path / "bench" / "work-toy" / "seal-1.cvb")["meta"]
    assert meta["counts"]["conversations"] == res["corpus"]["conversations"]
    table = bench_harness.bench_report.table(res)
    assert "| seal | chatvault seal --threads 1 |" in table
    assert "tar\\|zstd -T1\\|age + minisign" in table
