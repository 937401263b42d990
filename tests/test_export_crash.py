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
# media-synced, media-renamed, media-readback, media-recorded.
RUNNER = r"""
import os, sys, time
from vault import atomic, exporter
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
