"""``export run``: incremental sealing, chaining, splitting, failures, rewrite."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from export_kit import (add_source, bundle_files, check_consistent, conv, make_site, noise,
                        open_bundle, sha256, vault_view, write_jsonl)
from vault import bundle, canonical, exportstate, records
from vault.exportseal import plaintext_budget


def canonical_of(convs: list[dict]) -> dict[str, dict]:
    out = {}
    for c in convs:
        data, _ = records.canonical_record(canonical.loads(canonical.dumps(c)))
        out[c["conversation_id"]] = canonical.loads(data)
    return out


def run_json(cli, site, *more) -> tuple[int, dict]:
    res = cli("export", "run", *site.args(*more), "--json")
    return res.code, res.json()


def test_first_run_seals_everything_with_chain_and_context(tmp_path: Path, cli) -> None:
    convs = [conv(f"c{i}", [f"hello {i}", "reply", "thanks"]) for i in range(5)]
    site = make_site(tmp_path, convs=convs)

    code, out = run_json(cli, site)

    assert code == 0, out
    assert out["totals"]["conversations"] == 5 and out["totals"]["messages"] == 15
    assert out["totals"]["bundles"] == 1 and out["totals"]["written_to_media"] == 1
    assert out["totals"]["bytes_in"] == site.source.stat().st_size
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb"]
    meta, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000001.cvb")
    assert meta["kind"] == "export" and meta["source"] == "web"
    assert meta["sequence"] == 1 and meta["prev_hash"] is None
    # the source's settings travel signed, the region normalised ("UK" is GB)
    assert meta["context"] == {"format": "jsonl", "timezone": "Europe/London",
                               "phone_region": "GB"}
    expected = canonical_of(convs)
    assert {r["conversation_id"]: r for r in rows} == {
        k: {**v, "source": "web"} for k, v in expected.items()}
    check_consistent(site, settled=True)


def test_second_run_with_no_new_data_writes_nothing(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert run_json(cli, site)[0] == 0
    before = {p.name: (p.stat().st_mtime_ns, sha256(p)) for p in site.stick_outbox.iterdir()}

    code, out = run_json(cli, site)

    assert code == 0
    assert out["totals"]["bundles"] == 0 and out["totals"]["written_to_media"] == 0
    assert out["sources"][0]["conversations_read"] == 3
    after = {p.name: (p.stat().st_mtime_ns, sha256(p)) for p in site.stick_outbox.iterdir()}
    assert after == before
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]


def test_grown_conversation_is_sealed_again_and_nothing_else(tmp_path: Path, cli) -> None:
    convs = [conv(f"c{i}", [f"hello {i}", "reply"]) for i in range(4)]
    site = make_site(tmp_path, convs=convs)
    run_json(cli, site)
    first = sha256(site.stick_outbox / "web-00000001.cvb")

    convs[2] = conv("c2", ["hello 2", "reply", "one more question", "answered"])
    write_jsonl(site.source, convs)
    code, out = run_json(cli, site)

    assert code == 0
    assert [b["file"] for b in out["sources"][0]["bundles"]] == ["web-00000002.cvb"]
    meta, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000002.cvb")
    assert [r["conversation_id"] for r in rows] == ["c2"]
    assert len(rows[0]["messages"]) == 4
    assert meta["sequence"] == 2 and meta["prev_hash"] == first
    assert sha256(site.stick_outbox / "web-00000001.cvb") == first
    assert vault_view(site) == {k: {**v, "source": "web"}
                                for k, v in canonical_of(convs).items()}
    check_consistent(site, settled=True)


def test_edited_and_new_conversations_only(tmp_path: Path, cli) -> None:
    convs = [conv(f"c{i}", [f"hello {i}"]) for i in range(3)]
    site = make_site(tmp_path, convs=convs)
    run_json(cli, site)

    convs[0]["messages"][0]["text"] = "hello 0 (edited)"
    convs.append(conv("c9", ["brand new"]))
    write_jsonl(site.source, convs)
    code, out = run_json(cli, site)

    assert code == 0 and out["totals"]["conversations"] == 2
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000002.cvb")
    assert sorted(r["conversation_id"] for r in rows) == ["c0", "c9"]


def test_daily_files_repeating_a_growing_conversation(tmp_path: Path, cli) -> None:
    """Only the last occurrence of a conversation counts; old copies are never resealed."""
    site = make_site(tmp_path)
    folder = tmp_path / "daily"
    write_jsonl(folder / "2024-03-14.jsonl", [conv("c1", ["a"]), conv("c2", ["b"])])
    write_jsonl(folder / "2024-03-15.jsonl", [conv("c1", ["a", "a2"])])
    site.exporter.config.write_text(site.exporter.config.read_text().replace(
        str(site.source), str(folder)))

    code, out = run_json(cli, site)
    assert code == 0 and out["totals"]["conversations"] == 2
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000001.cvb")
    assert {r["conversation_id"]: len(r["messages"]) for r in rows} == {"c1": 2, "c2": 1}

    assert run_json(cli, site)[1]["totals"]["bundles"] == 0

    write_jsonl(folder / "2024-03-16.jsonl", [conv("c1", ["a", "a2", "a3"])])
    out = run_json(cli, site)[1]
    assert out["totals"]["conversations"] == 1
    assert run_json(cli, site)[1]["totals"]["bundles"] == 0


def test_two_recipients_both_open_every_bundle(tmp_path: Path, cli) -> None:
    rng = random.Random(5)
    convs = [conv(f"c{i}", [noise(rng, 3000) for _ in range(4)]) for i in range(20)]
    site = make_site(tmp_path, vaults=2, convs=convs, max_bundle_bytes=64 * 1024)

    code, out = run_json(cli, site)

    assert code == 0 and out["totals"]["bundles"] >= 3
    fingerprints = sorted(v.public().fingerprint for v in site.vaults)
    for name in bundle_files(site.stick_outbox):
        views = [open_bundle(v, site.stick_outbox / name) for v in site.vaults]
        assert views[0] == views[1]
        assert sorted(views[0][0]["recipients"]) == fingerprints
    assert vault_view(site, site.vaults[1]).keys() == {f"c{i}" for i in range(20)}


def test_bundles_never_exceed_max_bundle_bytes(tmp_path: Path, cli) -> None:
    cap = 64 * 1024
    rng = random.Random(11)
    convs = [conv(f"c{i}", [noise(rng, rng.randint(500, 9000)) for _ in range(3)])
             for i in range(60)]
    site = make_site(tmp_path, convs=convs, max_bundle_bytes=cap)

    code, out = run_json(cli, site)

    assert code == 0
    names = bundle_files(site.stick_outbox)
    assert len(names) == out["totals"]["bundles"] >= 5
    assert all((site.stick_outbox / n).stat().st_size <= cap for n in names)
    seen = [r["conversation_id"] for n in names
            for r in open_bundle(site.vaults[0], site.stick_outbox / n)[1]]
    assert sorted(seen) == sorted(f"c{i}" for i in range(60))  # each exactly once
    check_consistent(site, settled=True)


@pytest.mark.parametrize("cap,recipients", [(64 * 1024, 1), (200_000, 3), (1024**2, 2)])
def test_budget_holds_for_incompressible_payload(pair, cap: int, recipients: int) -> None:
    """The rule in the worst case: random bytes that zstd can only grow."""
    import hashlib
    import io

    from vault import keys

    budget = plaintext_budget(cap, recipients)
    assert budget > cap * 0.85  # a useful budget, not a timid one
    others = [keys.generate(f"v{i}", "vault").public() for i in range(recipients - 1)]
    writer = bundle.BundleWriter(pair.root / "w.cvb", pair.exporter.identity(),
                                 [pair.vault.public(), *others], source="web", sequence=1)
    while True:
        size = min(8192, budget - writer.plaintext_size - 41)
        if size <= 0:
            break
        data = os.urandom(size)
        writer.add_blob(hashlib.sha256(data).hexdigest(), io.BytesIO(data), size)
    sealed = writer.finish()
    # fits, and wastes no more than the reserved allowances (meta, zstd, rounding)
    assert cap - 12 * 1024 <= sealed.size <= cap, (sealed.size, cap)


def test_failing_sources_do_not_stop_the_others(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    garbage = tmp_path / "exports" / "broken.jsonl"
    garbage.write_bytes(b"this is not json\n{also not\n")
    add_source(site, "broken", garbage)
    add_source(site, "missing", tmp_path / "exports" / "nothing-here.jsonl")

    code, out = run_json(cli, site)

    assert code == 3
    by_name = {s["name"]: s for s in out["sources"]}
    assert by_name["web"]["exit_code"] == 0 and len(by_name["web"]["bundles"]) == 1
    assert by_name["broken"]["exit_code"] == 3
    assert "no line could be read" in by_name["broken"]["errors"][0]
    assert by_name["missing"]["exit_code"] == 3
    assert "no such file" in by_name["missing"]["errors"][0]
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb"]


def test_invalid_conversation_is_reported_and_retried(tmp_path: Path, cli) -> None:
    bad = conv("bad", ["x"])
    bad["messages"][0]["from"] = "nobody"
    site = make_site(tmp_path, convs=[conv("good", ["fine"]), bad])

    code, out = run_json(cli, site)

    assert code == 3
    assert out["sources"][0]["problems"] == 1 and out["totals"]["conversations"] == 1
    assert any("'from'" in e for e in out["sources"][0]["errors"])
    # not marked exported: the next run reports it again, and seals nothing new
    code, out = run_json(cli, site)
    assert code == 3 and out["totals"]["bundles"] == 0


def test_conversation_larger_than_the_cap_is_refused(tmp_path: Path, cli) -> None:
    rng = random.Random(2)
    big = conv("big", [noise(rng, 50_000) for _ in range(3)])
    site = make_site(tmp_path, convs=[conv("small", ["hi"]), big],
                     max_bundle_bytes=64 * 1024)

    code, out = run_json(cli, site)

    assert code == 3
    assert "max_bundle_bytes" in " ".join(out["sources"][0]["errors"])
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000001.cvb")
    assert [r["conversation_id"] for r in rows] == ["small"]


def test_human_summary_goes_to_stderr(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    res = cli("export", "run", *site.args())
    assert res.code == 0 and res.out == ""
    assert "total: 3 conversations, 6 messages" in res.err
    assert "web-00000001.cvb" in res.err and "written and verified" in res.err


def test_missing_media_keeps_bundles_until_the_next_run(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    res = cli("export", "run", "--home", site.exporter.path, "--media", tmp_path / "absent",
              "--json")
    assert res.code == 5
    assert res.json()["media"]["error"]["error"] == "media_missing"
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]
    with site.state() as state:
        assert state.bundles()[0].media_written_at is None

    code, out = run_json(cli, site)
    assert code == 0 and out["totals"]["bundles"] == 0
    assert [w["file"] for w in out["media"]["written"]] == ["web-00000001.cvb"]
    check_consistent(site, settled=True)


def test_rewrite_writes_every_unacknowledged_bundle_again(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, max_bundle_bytes=64 * 1024,
                     convs=[conv(f"c{i}", [noise(random.Random(i), 20_000)]) for i in range(6)])
    run_json(cli, site)
    names = bundle_files(site.stick_outbox)
    assert len(names) >= 2
    spare = tmp_path / "spare-stick"
    spare.mkdir()

    res = cli("export", "rewrite", "--home", site.exporter.path, "--media", spare, "--json")
    assert res.code == 0
    assert bundle_files(spare / "chatvault" / "outbox") == names

    # a damaged copy on the first stick is replaced by a verified one
    damaged = site.stick_outbox / names[0]
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert cli("export", "rewrite", *site.args()).code == 0
    check_consistent(site, settled=True)


def test_a_second_concurrent_command_is_refused(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    with exportstate.locked(site.exporter.path):
        res = cli("export", "run", *site.args())
    assert res.code == 1
    assert "another export command is running" in res.err
    assert bundle_files(site.outbox) == []


def test_many_conversations_across_batches(tmp_path: Path, cli) -> None:
    """More conversations than one batch of the scan: nothing missed, nothing doubled."""
    convs = [conv(f"c{i:05d}", [f"message {i}"]) for i in range(5000)]
    site = make_site(tmp_path, convs=convs[:2500])
    other = write_jsonl(tmp_path / "exports" / "more" / "part2.jsonl", convs[2500:])
    site.exporter.config.write_text(site.exporter.config.read_text().replace(
        str(site.source), str(other.parent.parent)))
    site.source.rename(other.parent / "part1.jsonl")

    code, out = run_json(cli, site)
    assert code == 0 and out["totals"]["conversations"] == 5000
    held = vault_view(site)
    assert len(held) == 5000

    for i in (7, 2301, 2600, 4999):
        convs[i]["messages"].append({"id": "late", "at": "2024-03-15T10:00:00Z",
                                     "from": "a", "text": "follow-up"})
    write_jsonl(other.parent / "part1.jsonl", convs[:2500])
    write_jsonl(other, convs[2500:])
    code, out = run_json(cli, site)
    assert code == 0 and out["totals"]["conversations"] == 4
    _, rows = open_bundle(site.vaults[0], site.stick_outbox / "web-00000002.cvb")
    assert sorted(r["conversation_id"] for r in rows) == ["c00007", "c02301", "c02600",
                                                          "c04999"]


def _on_a_terminal(args: list) -> tuple[int, bytes]:
    """Run chatvault with stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    import pty
    import select
    import subprocess
    import sys

    from conftest import REPO

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vault", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"})
    os.close(slave)
    seen = b""
    while select.select([master], [], [], 60)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return proc.wait(timeout=60), seen


def test_progress_bars_on_a_terminal_only(tmp_path: Path) -> None:
    rng = random.Random(4)
    site = make_site(tmp_path, convs=[conv(f"c{i}", [noise(rng, 4000)]) for i in range(50)])
    code, seen = _on_a_terminal(["export", "run", *site.args(), "--quiet"])
    assert code == 0 and b"\x1b[" not in seen and b"total: 50 conversations" in seen

    write_jsonl(site.source, [conv("new", ["x"])])
    code, seen = _on_a_terminal(["export", "run", *site.args()])
    assert code == 0
    assert b"\x1b[" in seen and b"sealing web" in seen  # rich drew its bars
    assert b"total: 1 conversations" in seen


def test_a_warning_about_a_source_is_given_once_per_run(tmp_path: Path, cli,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """export run reads a changed export twice (scan, then seal): one warning, not two."""
    site = make_site(tmp_path)
    chat = tmp_path / "exports" / "wa" / "chat.txt"
    chat.parent.mkdir()
    chat.write_text("25/03/2024, 10:01 - Ana: hello\n", encoding="utf-8")
    add_source(site, "wa", chat.parent, fmt="whatsapp")  # no timezone: read as UTC, said so

    code, out = run_json(cli, site)

    assert code == 0, out
    assert caplog.text.count("no timezone is set") == 1, caplog.text
