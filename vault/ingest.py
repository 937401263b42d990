"""Verified ingest: staged bundle -> verify -> decrypt -> validate -> tombstones -> store.

For each staged bundle (:mod:`vault.staging`), in this order:

0. a file staging refused on its first bytes is recorded in quarantine
   without having been copied (or, seen before, recognised and not read);
1. a bundle whose SHA-256 is already in the store is a **duplicate**: nothing
   is opened, the receipt says so (staging did not even copy it when the
   file on the media hashed to a bundle held);
2. structure, signer trust (role ``exporter``) and signature are checked
   before anything is decrypted, then the header's meta (kind ``export``,
   a source name usable as a folder name, sequence, predecessor hash);
3. with the store's write lock held (one transaction per bundle), the
   **chain** is checked against what the vault holds for the source
   (:mod:`vault.chain`): a replay is a duplicate, a fork or a rolled-back
   history is refused (exit 4), a gap is ingested and noted;
4. payload decrypted and decompressed within the declared bounds, every
   record validated (one invalid record refuses the whole bundle, and so do
   a conversation id met twice and a record naming another source than the
   header), records covered by a tombstone left out (counted: "left out
   (erased)"), so are records of a conversation retention purged that has
   not been active since (:mod:`vault.purges`; counted: "left out
   (purged)"), the rest upserted (:mod:`vault.upsert`); an exception no step
   expected (a bug) rolls the bundle back and quarantines it as
   ``ingest_failed``, naming the record, and the run goes on;
5. the sealed bundle is archived to ``H/archive/<source>/<file>`` (hard
   link or copy, atomically) *before* the commit: a crash between the two
   leaves an archived file without a store row, which is harmless, and the
   next run ingests the still-staged bundle again;
6. commit, then a signed receipt (a copy always in ``H/receipts/``), then
   the staged copy is removed.

A refused bundle moves to ``H/quarantine/`` with a ``.reason.json`` beside
it and a row in the ``quarantine`` table (:mod:`vault.quarantine`); it is
never deleted. The other bundles carry on. Messages, reasons and receipts
name a bundle as the operator knows it (its name on the media, the path
given), never by its staging copy. Logs name bundles, codes and counts,
never record content.

Receipts go onto the media by :mod:`vault.receiptdelivery`; the bundle is
archived by :func:`vault.archive.place`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any, Callable

from vault import atomic, audit, canonical, ingestbundle, ingestlock, receiptdelivery, receipts
from vault import staging, statecounts, statehook, store, vaultconfig
from vault.errors import MediaError
from vault.home import Home
from vault.ingestbundle import Outcome

log = logging.getLogger(__name__)

#: test hook: called with the name of each step, so a crash can be injected there
FAULT: Callable[[str], None] | None = None
#: SQLite page cache of the ingest connection, KiB. Ingest appends: its pages
#: are written once and rarely read again, so the store's 64 MiB cache (sized
#: for lookups) only held memory; a small one keeps peak memory flat however
#: large the bundle, at no measured cost in speed.
INGEST_CACHE_KIB = 8192


def _fault(step: str) -> None:
    if FAULT is not None:
        try:
            FAULT(step)
        except Exception as exc:
            exc.injected_crash = True  # type: ignore[attr-defined]  # never handled
            raise


# -- the whole run ------------------------------------------------------------------

def ingest_staged(home: Path, staged: list[staging.Staged], *, media_label: str | None = None,
                  media_serial: str | None = None, progress: bool = False,
                  stop: Callable[[], bool] | None = None,
                  check_state: bool = True) -> list[Outcome]:
    """Ingest staged bundles one by one; every outcome has a receipt.

    One ingest at a time per vault (:mod:`vault.ingestlock`). When ``stop()``
    turns true (the daemon's SIGTERM), the bundle in hand is finished and no
    other is begun: the outcomes returned are fewer than ``staged``, and the
    staged copies not begun stay in staging (:func:`vault.staging.pending`).
    A store older than the state file is refused before any bundle
    (:func:`vault.statecounts.require_current`; a rebuild skips that check).
    """
    h = Home(Path(home)).require()
    cfg = vaultconfig.load(h.path)
    run = ingestbundle.Run(h, None, cfg, h.identity(), h.trust(), media_label,
                           media_serial, _fault)
    outcomes: list[Outcome] = []
    with ingestlock.held(h.path):
        run.conn = store.open_store(h.path / store.FILE_NAME)
        if check_state:
            try:
                statecounts.require_current(h.path, run.conn)
            except BaseException:
                run.conn.close()
                raise
        _ingest_all(run, staged, progress, outcomes, stop)
    # the held bundles (and, on first use, the identifier key) are part of the state file
    statehook.changed(h.path, "ingest")
    return outcomes


def _ingest_all(run: ingestbundle.Run, staged: list[staging.Staged], progress: bool,
                outcomes: list[Outcome], stop: Callable[[], bool] | None) -> None:
    try:
        run.conn.execute(f"PRAGMA cache_size = -{INGEST_CACHE_KIB}")
        with _progress_bar(progress) as bar:
            run.progress = bar
            for n, item in enumerate(staged):
                if stop is not None and stop():
                    left = staged[n:]
                    kept = sum(1 for s in left if s.kind == staging.COPY)
                    log.info("stopping: %d bundle(s) not ingested (%d kept in staging for "
                             "the next start)", len(left), kept)
                    break
                outcome = ingestbundle.one(run, item)
                outcome.origin = item.origin
                _finish(run, item, outcome)
                outcomes.append(outcome)
    finally:
        run.conn.close()


def ingest_media(home: Path, media_root: Path, *, media_label: str | None = None,
                 media_serial: str | None = None, progress: bool = False,
                 delete_ingested: bool = False) -> list[Outcome]:
    """Stage, ingest and write receipts onto the media: ``vault ingest <media>``.

    Bundles left in staging by an interrupted run are ingested too. When the
    media vanishes while staging, what was fully staged is still ingested
    (receipts kept in ``H/receipts/``) and the MediaError is raised with the
    outcomes attached as ``.outcomes``; so it is when the receipts cannot be
    written (a read-only or full stick): the ingest itself stands.
    """
    cfg = vaultconfig.load(Path(home))
    kw: dict[str, Any] = {"media_label": media_label, "media_serial": media_serial,
                          "progress": progress}
    with ingestlock.held(Path(home)):  # what is pending then is no other run's
        try:
            fresh = staging.stage_from_media(home, media_root,
                                             max_plaintext=cfg.max_plaintext_bytes)
        except MediaError as exc:
            got = getattr(exc, "staged", [])
            exc.outcomes = ingest_staged(home, _with_pending(home, got), **kw)  # type: ignore
            raise
        outcomes = ingest_staged(home, _with_pending(home, fresh), **kw)
    try:
        receiptdelivery.deliver(media_root, outcomes, delete_ingested=delete_ingested)
    except MediaError as exc:
        exc.outcomes = outcomes  # type: ignore[attr-defined]
        raise
    return outcomes


def _with_pending(home: Path, fresh: list[staging.Staged]) -> list[staging.Staged]:
    paths = {s.path for s in fresh}
    return fresh + [s for s in staging.pending(home) if s.path not in paths]



# -- receipts, progress ------------------------------------------------------

def _finish(run: ingestbundle.Run, item: staging.Staged, outcome: Outcome) -> None:
    """Sign the receipt, keep a copy in ``H/receipts/``, forget the staged copy."""
    outcome.receipt = receipts.make(
        run.identity, bundle_file=item.bundle_file, bundle_sha256=item.sha256,
        status=outcome.status, reason=outcome.reason, meta=outcome.meta,
        counts=outcome.counts, audit=audit.position(run.conn))
    stem = item.bundle_file[:-4] if item.bundle_file.endswith(".cvb") else item.bundle_file
    stamp = re.sub(r"[^0-9TZ]", "", outcome.receipt["body"]["at"])
    copy = run.home.path / "receipts" / f"{stem}.{stamp}.{outcome.status}{receipts.SUFFIX}"
    if not outcome.recognised:
        copy.parent.mkdir(exist_ok=True, mode=0o700)
        atomic.write_bytes(copy, canonical.dumps(outcome.receipt) + b"\n", 0o600)
        outcome.receipt_paths.append(str(copy))
    if outcome.status != "quarantined":
        staging.remove(item)
    _fault("finished")


def _progress_bar(enabled: bool) -> Any:
    """A rich progress bar on stderr, one line per bundle (conversations read)."""
    if not enabled:
        return contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=Console(stderr=True), transient=False)
