"""One ingest at a time: a by-hand run never takes what another run staged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import Pair
from vault import ingest, ingestlock, media, staging
from vault_kit import Chain, conv, outbox, stick


def _receipts(media_root: Path) -> list[str]:
    folder = media_root / media.ROOT / "receipts"
    return sorted(p.name for p in folder.glob("*.receipt.json")) if folder.is_dir() else []


def test_a_by_hand_ingest_waits_and_leaves_the_other_runs_bundles_alone(
        pair: Pair, tmp_path: Path) -> None:
    first, second = stick(tmp_path / "first"), stick(tmp_path / "second")
    Chain(pair, outbox(first)).seal([conv("a1", ["from the first stick"])], source="web")
    Chain(pair, outbox(second)).seal([conv("b1", ["from the second stick"])], source="shop")
    home = pair.vault_path
    staged_first = threading.Event()
    release = threading.Event()
    done: dict[str, object] = {}

    def other_run() -> None:  # what the daemon does with the first stick
        with ingestlock.held(home):
            items = staging.stage_from_media(home, first, max_plaintext=2**30)
            staged_first.set()
            release.wait(10)
            done["first"] = ingest.ingest_staged(home, items)

    def by_hand() -> None:
        done["second"] = ingest.ingest_media(home, second)

    daemon = threading.Thread(target=other_run)
    daemon.start()
    assert staged_first.wait(10)
    person = threading.Thread(target=by_hand)
    person.start()
    time.sleep(0.5)
    assert person.is_alive() and "second" not in done  # waiting for the lock
    release.set()
    daemon.join(10)
    person.join(30)

    mine = done["second"]
    assert [o.bundle_file for o in mine] == ["shop-00000001.cvb"]  # type: ignore[attr-defined]
    assert [o.status for o in mine] == ["ingested"]  # type: ignore[attr-defined]
    assert all(r.startswith("shop-") for r in _receipts(second)), _receipts(second)
    assert staging.pending(home) == []


def test_the_lock_is_re_entrant_in_one_thread(tmp_path: Path) -> None:
    got = threading.Event()

    def another() -> None:
        with ingestlock.held(tmp_path):
            got.set()

    with ingestlock.held(tmp_path):
        with ingestlock.held(tmp_path):
            pass
        other = threading.Thread(target=another)
        other.start()
        assert not got.wait(0.3)  # another thread waits while this one holds it
    other.join(5)
    assert got.is_set()
