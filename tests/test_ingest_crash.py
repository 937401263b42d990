"""Crash mid-ingest: killed at any point, the store is consistent and the next run finishes.

Each run happens in a fresh process that is killed with SIGKILL: either by
itself at a named step (``vault.ingest.FAULT``), or from outside while it
works (a real ``kill -9``, no cooperation). After the kill the store must
pass its own checks and hold each bundle fully or not at all; then a normal
run must finish the job, and the result must equal a store that was never
interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, Pair
from vault import canonical, ingest, receipts, staging, store
from vault_kit import Chain, consistent, conv, count, open_store, outbox, stick

_SCRIPT = """
import os, signal, sys
from pathlib import Path
from vault import ingest
step, nth, seen = sys.argv[3], int(sys.argv[4]), []
def fault(name):
    if name == step:
        seen.append(name)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
if step != "none":
    ingest.FAULT = fault
ingest.ingest_media(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def _start(vault: Path, media_root: Path, step: str = "none", nth: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(vault), str(media_root), step,
                             str(nth)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _bundles(pair: Pair, media_root: Path, sizes: list[int]) -> None:
    ch = Chain(pair, outbox(media_root))
    for b, n in enumerate(sizes):
        ch.seal([conv(f"b{b}-c{i}", [f"message {j} of {i}: call 07700 900{i % 1000:03d}"
                                     for j in range(10)]) for i in range(n)])
    # a conversation that every bundle updates
    ch.seal([conv("b0-c0", ["updated at the end"])])


def _reference(template: Path, media_root: Path, root: Path) -> dict:
    """The store after an uninterrupted ingest of the same media."""
    vault = root / "reference-vault"
    shutil.copytree(template, vault)
    clean = root / "reference-stick"
    shutil.copytree(media_root, clean)
    ingest.ingest_media(vault, clean)
    with store.open_store(vault / store.FILE_NAME) as conn:
        return store.dump(conn)


def _finish_and_compare(pair: Pair, media_root: Path, reference: dict) -> None:
    outs = ingest.ingest_media(pair.vault_path, media_root)
    assert outs and all(o.status in ("ingested", "duplicate") for o in outs), outs
    assert staging.pending(pair.vault_path) == []
    with open_store(pair) as conn:
        consistent(conn)
        assert count(conn, "quarantine") == 0
        assert store.dump(conn) == reference
        from vault import audit

        assert audit.verify(conn) is None
    names = {receipts.verify_file(p, pair.exporter.trust()).body["bundle_file"]
             for p in receipts.on_media(media_root)}
    assert names == {p.name for p in outbox(media_root).iterdir()}


@pytest.mark.parametrize("step,held", [
    ("verified", 1), ("loaded", 1), ("archived", 1), ("before-commit", 1),
    ("committed", 2), ("finished", 2),
])
def test_killed_at_each_step_then_finished(pair: Pair, tmp_path: Path, step: str,
                                           held: int) -> None:
    media_root = stick(tmp_path / "stick")
    _bundles(pair, media_root, [3, 4])
    template = tmp_path / "template"
    shutil.copytree(pair.vault_path, template)
    reference = _reference(template, media_root, tmp_path)

    proc = _start(pair.vault_path, media_root, step, nth=2)  # during the second bundle
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == -signal.SIGKILL, err.decode()
    with open_store(pair) as conn:
        consistent(conn)
        assert count(conn, "bundles") == held
        assert conn.execute("SELECT max(sequence) FROM bundles").fetchone()[0] == held
    if step in ("archived", "before-commit", "committed", "finished"):
        assert (pair.vault_path / "archive" / "web" / "web-00000002.cvb").is_file()
    _finish_and_compare(pair, media_root, reference)


def test_exception_inside_the_transaction_changes_nothing(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    _bundles(pair, media_root, [2])
    ingest.FAULT = lambda name: (_ for _ in ()).throw(RuntimeError("boom")) \
        if name == "archived" else None
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ingest.ingest_media(pair.vault_path, media_root)
    finally:
        ingest.FAULT = None
    with open_store(pair) as conn:
        assert count(conn, "bundles") == count(conn, "conversations") == 0
        assert count(conn, "audit_log") == 0
        consistent(conn)
    assert len(staging.pending(pair.vault_path)) == 2, "staged copies wait for the next run"
    outs = ingest.ingest_media(pair.vault_path, media_root)
    assert [o.status for o in outs] == ["ingested", "ingested"]


def _wal_size(vault: Path) -> int:
    wal = vault / (store.FILE_NAME + "-wal")
    try:
        return wal.stat().st_size
    except FileNotFoundError:  # not made yet, or removed by the last connection's close
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["staging", "first-wal-growth", "second-bundle"])
def test_real_kill_9_from_outside(pair: Pair, tmp_path: Path, moment: str) -> None:
    """No hooks: the process is killed from outside while it works."""
    media_root = stick(tmp_path / "stick")
    _bundles(pair, media_root, [1500, 1500, 1500])
    template = tmp_path / "template"
    shutil.copytree(pair.vault_path, template)
    reference = _reference(template, media_root, tmp_path)
    start_wal = _wal_size(pair.vault_path)
    staged_dir = pair.vault_path / "staging"
    archive = pair.vault_path / "archive" / "web"

    def reached() -> bool:
        if moment == "staging":
            return any(staged_dir.glob(".*tmp-*")) or any(staged_dir.glob("*.cvb"))
        if moment == "first-wal-growth":
            return _wal_size(pair.vault_path) > start_wal + 256 * 1024
        return (archive / "web-00000001.cvb").exists()

    proc = _start(pair.vault_path, media_root)
    deadline = time.monotonic() + 120
    while not reached() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, "the run ended before the moment to kill it was seen"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    with open_store(pair) as conn:
        consistent(conn)
        for sha, counts in conn.execute("SELECT sha256, header_counts FROM bundles"):
            held = conn.execute("SELECT count(*) FROM conversations c JOIN bundles b ON "
                                "b.id = c.bundle WHERE b.sha256 = ?", (sha,)).fetchone()[0]
            assert held <= canonical.loads(counts)["conversations"]
    _finish_and_compare(pair, media_root, reference)


def test_two_ingests_at_once_take_turns(pair: Pair, tmp_path: Path) -> None:
    """The daemon and a person at the command line, on the same stick at the same time."""
    media_root = stick(tmp_path / "stick")
    _bundles(pair, media_root, [800, 800])
    bad = outbox(media_root) / "web-00000009.cvb"
    bad.write_bytes(b"\x89CVB\r\n\x1a\n" + b"\0" * 200)

    procs = [_start(pair.vault_path, media_root) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [r[1].decode()[-2000:] for r in results]
    with open_store(pair) as conn:
        consistent(conn)
        assert count(conn, "bundles") == 3 and count(conn, "quarantine") == 1
    on_media = {r.body["bundle_file"]: r.status for r in (
        receipts.verify_file(p, pair.exporter.trust()) for p in receipts.on_media(media_root))}
    assert on_media.pop("web-00000009.cvb") == "quarantined"
    assert set(on_media.values()) <= {"ingested", "duplicate"} and len(on_media) == 3
    kept = [p.name for p in (pair.vault_path / "receipts").iterdir()]
    assert len([k for k in kept if ".ingested." in k]) == 3, "each bundle ingested once"
    assert staging.pending(pair.vault_path) == []
