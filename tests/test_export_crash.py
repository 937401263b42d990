"""Crash safety: kill the exporter at every write step, then check and recover.

Each crash happens in a fresh process (``os._exit`` from a fault hook, or a
real SIGKILL), so no ``finally`` or ``except`` of ours gets to tidy up: what
is on disk is exactly what a power cut or the OOM killer would leave. After
each one the state, the local outbox and the stick must agree
(:func:`export_kit.check_consistent`), and the next run must finish the job
with nothing lost and no sequence used twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from export_kit import (bundle_files, check_consistent, conv, make_site, temporaries,
                        vault_view, write_jsonl)
from vault import canonical

# Runs the real CLI with a fault hook that kills the process (or parks it for
# a SIGKILL) at the nth time a named step is reached. Steps: seal-written,
# seal-synced, seal-renamed (inside the bundle writer's atomic file), sealed,
# recording (inside the state transaction), recorded, media-written,
# media-synced, media-renamed, media-readback, media-recorded; and the receipt
# steps of vault.acks: ack-recording, ack-recorded, settle-acknowledged,
# settle-unlinked, settle-recorded, tidy-removed.
RUNNER = r"""
import os, sys, time
from vault import acks, atomic, exporter
from vault.bundle import writer

mode, step, nth, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {}

def hook(name):
    seen[name] = seen.get(name, 0) + 1
    if name == step and seen[name] == nth:
        if mode == "exit":
            os._exit(137)
        open(marker, "w").close()
        time.sleep(600)

class HookedAtomicFile(atomic.AtomicFile):
    def __init__(self, path, mode=0o644, fault=None):
        super().__init__(path, mode, fault=lambda s: hook("seal-" + s))

exporter.fault_hook = hook
acks.fault_hook = hook
writer.AtomicFile = HookedAtomicFile
sys.argv = ["chatvault", *sys.argv[5:]]
from vault.cli import main
main()
"""

STEPS = [("seal-written", 1), ("seal-synced", 1), ("seal-renamed", 1), ("sealed", 1),
         ("recording", 1), ("recorded", 1), ("sealed", 2), ("recorded", 2),
         ("media-written", 1), ("media-synced", 1), ("media-renamed", 1),
         ("media-readback", 1), ("media-recorded", 1), ("media-written", 2)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _runner(mode: str, step: str, nth: int, marker: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-c", RUNNER, mode, step, str(nth), str(marker),
            *[str(a) for a in args]]


def _data(n: int = 8, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [conv(f"c{i}", [os.urandom(9000).hex()[:rng.randint(12000, 18000)]])
            for i in range(n)]


def _recovers(cli, site, convs: list[dict]) -> None:
    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 0, res.err
    check_consistent(site, settled=True)
    held = vault_view(site)
    assert sorted(held) == sorted(c["conversation_id"] for c in convs)
    for c in convs:
        assert held[c["conversation_id"]]["messages"] == canonical.loads(
            canonical.dumps(c))["messages"]
    # once settled, another run has nothing to do
    again = cli("export", "run", *site.args(), "--json").json()
    assert again["totals"]["bundles"] == 0 and again["totals"]["written_to_media"] == 0


@pytest.mark.parametrize("step,nth", STEPS, ids=[f"{s}#{n}" for s, n in STEPS])
def test_killed_at_each_write_step_then_recovered(tmp_path: Path, cli, step: str,
                                                  nth: int) -> None:
    convs = _data()
    site = make_site(tmp_path, convs=convs, max_bundle_bytes=64 * 1024)

    proc = subprocess.run(_runner("exit", step, nth, tmp_path / "m", "export", "run",
                                  *site.args(), "--quiet"),
                          env=_env(), capture_output=True, text=True, timeout=120)

    assert proc.returncode == 137, f"the run never reached {step}: {proc.stderr}"
    check_consistent(site)
    with site.state() as state:
        recorded = state.bundles()
        assert state.last_run()["finished_at"] is None
    if step.startswith("seal-") or step in ("sealed", "recording"):
        assert len(recorded) == nth - 1, "a bundle counted before its commit"
    if step in ("sealed", "seal-renamed"):
        assert len(bundle_files(site.outbox)) == nth, "the unrecorded file should be there"
    if step == "media-written":
        assert temporaries(site.stick_outbox), "the write should have been under way"
    _recovers(cli, site, convs)


def test_crash_in_a_later_run_reuses_the_sequence_cleanly(tmp_path: Path, cli) -> None:
    convs = _data(3)
    site = make_site(tmp_path, convs=convs)
    assert cli("export", "run", *site.args()).code == 0
    convs.append(conv("late", ["a new conversation"]))
    write_jsonl(site.source, convs)

    proc = subprocess.run(_runner("exit", "sealed", 1, tmp_path / "m", "export", "run",
                                  *site.args()), env=_env(), capture_output=True, timeout=120)
    assert proc.returncode == 137
    assert bundle_files(site.outbox) == ["web-00000001.cvb", "web-00000002.cvb"]

    status = cli("export", "status", "--home", site.exporter.path, "--json").json()
    assert any("did not finish" in a["message"] for a in status["alerts"])
    _recovers(cli, site, convs)
    assert bundle_files(site.stick_outbox) == ["web-00000001.cvb", "web-00000002.cvb"]


@pytest.mark.parametrize("step", ["seal-written", "media-written"])
def test_real_sigkill_mid_write(tmp_path: Path, cli, step: str) -> None:
    convs = _data()
    site = make_site(tmp_path, convs=convs, max_bundle_bytes=64 * 1024)
    marker = tmp_path / "parked"
    proc = subprocess.Popen(_runner("park", step, 1, marker, "export", "run", *site.args()),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the run never reached the step"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    check_consistent(site)
    folder = site.outbox if step.startswith("seal") else site.stick_outbox
    assert temporaries(folder), "a half-written temporary is what SIGKILL leaves"
    _recovers(cli, site, convs)


@pytest.mark.slow
def test_sigkill_at_arbitrary_moments_of_a_large_run(tmp_path: Path, cli) -> None:
    """Not a chosen step: wherever the kill lands, the invariant holds."""
    # ~40 MB in, ~50 bundles: a run takes seconds, so the kills land mid-way
    convs = [conv(f"c{i}", [os.urandom(50_000).hex() for _ in range(4)]) for i in range(100)]
    site = make_site(tmp_path, convs=convs, max_bundle_bytes=1024 * 1024)
    rng = random.Random(8)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "vault", "export", "run", *site.args()],
                                env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        check_consistent(site)
    _recovers(cli, site, convs)


# -- receipts: judging, settling, tidying the stick ---------------------------------
#
# Two vaults; three bundles on the stick. Vault A acknowledged all three, vault B
# the first two: bundles 1 and 2 are safe to let go, bundle 3 must stay (locally
# and on the stick) until B acknowledges it. On the stick the five receipts are
# judged in name order (1A 1B 2A 2B 3A, or B before A), so ack-recorded #2 is the
# one that makes bundle 1 safe; settle lets go of 1 then 2; tidy removes the two
# bundles and then their four receipts (six files).
RECEIPT_STEPS = [("ack-recording", 1), ("ack-recorded", 1), ("ack-recorded", 2),
                 ("ack-recorded", 5), ("settle-acknowledged", 1), ("settle-unlinked", 1),
                 ("settle-recorded", 1), ("settle-acknowledged", 2), ("settle-unlinked", 2),
                 ("tidy-removed", 1), ("tidy-removed", 2), ("tidy-removed", 3),
                 ("tidy-removed", 6)]
SAFE = {"web-00000001.cvb", "web-00000002.cvb"}
WAITING = "web-00000003.cvb"


def _acknowledged_site(tmp_path: Path, cli):
    from export_kit import give_receipt

    convs = _data()
    site = make_site(tmp_path, vaults=2, convs=convs, max_bundle_bytes=64 * 1024)
    assert cli("export", "run", *site.args()).code == 0
    assert bundle_files(site.stick_outbox) == sorted(SAFE | {WAITING})
    a, b = site.vaults
    given = {}
    for name in sorted(SAFE | {WAITING}):
        for v in (a, b) if name in SAFE else (a,):
            given[give_receipt(site, v, name).name] = (name, v.public().fingerprint)
    return site, convs, given


def _receipt_files(site) -> list[str]:
    folder = site.stick / "chatvault" / "receipts"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _recorded_acks(site) -> list[tuple[str, str, str]]:
    with site.state() as state:
        return sorted((state.bundle_by_sha(a.sha256).file_name, a.vault, a.status)
                      for a in state.acks())


def _status(cli, site) -> tuple[int, dict]:
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    return res.code, res.json()


def _check_after_receipt_crash(cli, site, given: dict) -> set[tuple[str, str]]:
    """The invariant after a run killed while handling receipts; what it had recorded."""
    check_consistent(site)
    everyone = {v.public().fingerprint for v in site.vaults}
    truth = set(given.values())  # what the vaults really hold
    acks = _recorded_acks(site)
    recorded = {(name, vault) for name, vault, _ in acks}
    # acknowledgements: only real ones, each once, none changed
    assert len(recorded) == len(acks) and recorded <= truth
    assert {status for *_, status in acks} <= {"ingested"}
    with site.state() as state:
        rows = {r.file_name: r for r in state.bundles()}
    assert sorted(rows) == sorted(SAFE | {WAITING})
    on_stick, local = set(bundle_files(site.stick_outbox)), set(bundle_files(site.outbox))
    for name, row in rows.items():
        held_by = {v for n, v in recorded if n == name}
        if row.acknowledged_at:
            assert held_by == everyone, f"{name} acknowledged before every vault said so"
        if name not in local:
            assert row.acknowledged_at, f"{name}: local copy deleted before it was safe"
        if name not in local | on_stick:
            assert {v for n, v in truth if n == name} == everyone, f"{name} lost"
    assert WAITING in local and WAITING in on_stick and not rows[WAITING].acknowledged_at
    # receipts leave the stick only once their bundle is safe in the state
    for receipt, (name, _) in given.items():
        if receipt not in _receipt_files(site):
            assert rows[name].acknowledged_at, f"receipt {receipt} removed too early"

    code, status = _status(cli, site)
    assert code == 1, status["alerts"]  # WARNING: the run did not finish; nothing CRITICAL
    assert [a["level"] for a in status["alerts"]] == ["WARNING"]
    assert "did not finish" in status["alerts"][0]["message"]
    waiting = {w["file"]: w for w in status["unacknowledged"]}
    assert set(waiting) == {n for n, r in rows.items() if not r.acknowledged_at}
    for name, w in waiting.items():
        assert w["local_copy"] and w["on_media"], w
        assert w["waiting_for"] == sorted(everyone - {v for n, v in recorded if n == name})
    return recorded


def _check_recovered(cli, site, convs: list[dict], given: dict,
                     recorded: set[tuple[str, str]], step: str, nth: int) -> None:
    left = {r: given[r] for r in _receipt_files(site)}
    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 0, res.err
    out = res.json()

    # every receipt still on the stick judged again, counted once over both runs
    judged = {o["file"]: o for o in out["receipts"]["receipts"]}
    assert set(judged) == set(left)
    for receipt, (name, vault) in left.items():
        o = judged[receipt]
        assert (o["bundle"], o["vault"]) == (name, vault)
        assert o["result"] == ("already" if (name, vault) in recorded else "acknowledged"), o
    assert _recorded_acks(site) == sorted((n, v, "ingested") for n, v in given.values())

    # everything safe let go of, locally, in the state and on the stick
    with site.state() as state:
        rows = {r.file_name: r for r in state.bundles()}
    for name in SAFE:
        assert rows[name].acknowledged_at and rows[name].local_deleted_at, rows[name]
    assert rows[WAITING].acknowledged_at is None and rows[WAITING].local_deleted_at is None
    assert bundle_files(site.outbox) == [WAITING]
    assert bundle_files(site.stick_outbox) == [WAITING]
    assert _receipt_files(site) == [r for r, (n, _) in given.items() if n == WAITING]
    name = sorted(SAFE)[nth - 1] if step.startswith("settle-") else None
    if step == "settle-acknowledged":  # the kill left an acknowledged bundle's local copy
        assert f"{name} was already acknowledged: local copy removed" in out["recovered"]
    elif step == "settle-unlinked":  # ... or deleted it without saying so in the state
        assert (f"{name} was already acknowledged and its local copy removed: recorded"
                in out["recovered"])
    else:
        assert out["recovered"] == []

    # nothing sealed or written again; the waiting bundle is still where B will find it
    assert out["totals"]["bundles"] == 0 and out["media"]["written"] == []
    check_consistent(site, settled=True)
    held = vault_view(site, site.vaults[1])
    assert set(held) <= {c["conversation_id"] for c in convs} and held
    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    [waiting] = status["unacknowledged"]
    assert waiting["file"] == WAITING
    assert waiting["waiting_for"] == [site.vaults[1].public().fingerprint]
    again = cli("export", "run", *site.args(), "--json").json()
    assert [o["result"] for o in again["receipts"]["receipts"]] == ["already"]
    assert again["recovered"] == [] and again["media"]["written"] == []


@pytest.mark.parametrize("step,nth", RECEIPT_STEPS, ids=[f"{s}#{n}" for s, n in RECEIPT_STEPS])
def test_killed_at_each_receipt_step_then_recovered(tmp_path: Path, cli, step: str,
                                                    nth: int) -> None:
    site, convs, given = _acknowledged_site(tmp_path, cli)

    proc = subprocess.run(_runner("exit", step, nth, tmp_path / "m", "export", "run",
                                  *site.args(), "--quiet"),
                          env=_env(), capture_output=True, text=True, timeout=120)

    assert proc.returncode == 137, f"the run never reached {step}: {proc.stderr}"
    recorded = _check_after_receipt_crash(cli, site, given)
    if step.startswith("ack-"):
        assert len(recorded) == nth - (step == "ack-recording")
    _check_recovered(cli, site, convs, given, recorded, step, nth)


@pytest.mark.parametrize("step", ["settle-acknowledged", "settle-unlinked"])
def test_real_sigkill_mid_settle(tmp_path: Path, cli, step: str) -> None:
    site, convs, given = _acknowledged_site(tmp_path, cli)
    marker = tmp_path / "parked"
    proc = subprocess.Popen(_runner("park", step, 1, marker, "export", "run", *site.args()),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the run never reached the step"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    recorded = _check_after_receipt_crash(cli, site, given)
    assert recorded == set(given.values())  # settling starts after every receipt was judged
    first = sorted(SAFE)[0]
    assert (first in bundle_files(site.outbox)) == (step == "settle-acknowledged")
    _check_recovered(cli, site, convs, given, recorded, step, 1)
