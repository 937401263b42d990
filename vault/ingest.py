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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vault import archive, atomic, audit, bundleids, canonical, chain, ingestlock, quarantine
from vault import purges, receiptdelivery, receipts, records, staging, store
from vault import statecounts, statehook, timestamps, tombstones, vaultconfig
from vault.bundle import Bundle, Record
from vault.errors import (EXIT_OK, ChatvaultError, CorruptPayload, IngestFailed,
                          InvalidRecord, MediaError, MediaIOError)
from vault.home import Home
from vault.keys import Identity
from vault.upsert import Loader

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


@dataclass
class Outcome:
    """What became of one bundle, and the signed receipt that says so."""

    bundle_file: str
    sha256: str
    status: str  # ingested | duplicate | quarantined
    reason: str | None = None
    meta: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    receipt: dict[str, Any] | None = None
    exit_code: int = EXIT_OK
    code: str | None = None
    receipt_paths: list[str] = field(default_factory=list)
    origin: str | None = None  # the file as the operator knows it
    recognised: bool = False  # given before for these bytes; nothing was copied

    def as_dict(self) -> dict[str, Any]:
        meta = self.meta or {}
        return {"bundle_file": self.bundle_file, "path": self.origin, "sha256": self.sha256,
                "status": self.status, "recognised": self.recognised,
                "reason": self.reason, "code": self.code, "exit_code": self.exit_code,
                "source": meta.get("source"), "sequence": meta.get("sequence"),
                "bundle_id": meta.get("bundle_id"), "counts": self.counts,
                "receipts": self.receipt_paths}


@dataclass
class _Run:
    home: Home
    conn: Any
    cfg: vaultconfig.VaultConfig
    identity: Identity
    trust: Any
    media_label: str | None
    media_serial: str | None
    progress: Any = None


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
    run = _Run(h, None, cfg, h.identity(), h.trust(), media_label, media_serial)
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


def _ingest_all(run: _Run, staged: list[staging.Staged], progress: bool,
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
                outcome = _one(run, item)
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


# -- one bundle -----------------------------------------------------------------------

def _one(run: _Run, item: staging.Staged) -> Outcome:
    meta: dict[str, Any] | None = None
    media_id = (run.media_label, run.media_serial)
    try:
        if item.kind == staging.REFUSED:
            return _refused(item, quarantine.refuse_unread(run.home.path, run.conn, item,
                                                           media_id))
        known = chain.bundle_row(run.conn, "sha256 = ?", (item.sha256,))
        if known is not None:
            return _duplicate(item, known)
        if item.kind == staging.HELD or not item.path.exists():
            return _refused(item, quarantine.handled_elsewhere(run.conn, item))
        try:
            bundle = Bundle(item.path, max_plaintext=run.cfg.max_plaintext_bytes)
        except OSError as exc:
            raise atomic.media_error(exc, item.path) from exc
        with bundle as b:
            entry = run.trust.require(b.prefix.signer, "exporter",
                                      what=f"signer of {item.bundle_file}")
            sha = b.verify_signature()
            if sha != item.sha256:
                raise CorruptPayload("staged copy changed after it was hashed",
                                     path=item.shown)
            meta = chain.checked_meta(b.meta, item.bundle_file)
            _fault("verified")
            try:
                return _load(run, item, b, meta, entry)
            except (ChatvaultError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - one bundle must not stop the others
                if getattr(exc, "injected_crash", False):
                    raise  # a test standing for the process dying here
                # rolled back by store.transaction; kept in quarantine like any refusal
                raise _unexpected(exc, item.bundle_file) from exc
    except ChatvaultError as exc:
        if isinstance(exc, MediaError):
            raise  # the vault's own disk: not the bundle's fault
        return _refused(item, quarantine.refuse(run.home.path, run.conn, item,
                                                item.as_known(exc), meta, media_id))


def _unexpected(exc: Exception, name: str, record: int | None = None) -> ChatvaultError:
    """What an exception no step expected stands for: the vault's disk, or a bug.

    A bug met while ingesting one verified bundle quarantines that bundle
    (exit 3, with its receipt) and the run goes on with the others; the log
    says it was an internal error, with the exception, for a bug report.
    """
    if isinstance(exc, IngestFailed):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    disk = ("disk I/O", "disk is full", "unable to open", "readonly database")
    if isinstance(exc, OSError) or any(d in str(exc) for d in disk):
        return MediaIOError(f"the vault's own disk failed while ingesting: {text}", path=name)
    where = f"record {record}: " if record is not None else ""
    log.error("%s: internal error in ingest (%s%s); the bundle is quarantined, the others "
              "go on", name, where, text)
    log.debug("%s: internal error in ingest", name, exc_info=exc)
    return IngestFailed(f"{where}internal error in ingest: {text}", path=name)


def _refused(item: staging.Staged, v: quarantine.Verdict) -> Outcome:
    return Outcome(item.bundle_file, item.sha256, "quarantined", f"{v.code}: {v.reason}",
                   v.meta, exit_code=v.exit_code, code=v.code, recognised=v.recognised)


def _duplicate(item: staging.Staged, row: dict[str, Any]) -> Outcome:
    meta = {"source": row["source"], "sequence": row["sequence"],
            "bundle_id": row["bundle_id"]}
    counts = canonical.loads(row["counts"]) if row["counts"] else {}
    log.info("%s: duplicate of %s #%d, skipped", item.bundle_file, row["source"],
             row["sequence"])
    return Outcome(item.bundle_file, item.sha256, "duplicate",
                   f"already ingested as {row['source']} #{row['sequence']}", meta, counts,
                   recognised=item.kind == staging.HELD)


def _load(run: _Run, item: staging.Staged, b: Bundle, meta: dict[str, Any],
          entry: Any) -> Outcome:
    conn, now = run.conn, timestamps.now_utc()
    src, seq = meta["source"], meta["sequence"]
    with store.transaction(conn):
        same = chain.check(conn, meta, item.sha256)
        if same is not None:
            return _duplicate(item, same)
        conn.execute("INSERT OR IGNORE INTO sources (name, first_seen_at) VALUES (?, ?)",
                     (src, now))
        conn.execute("UPDATE sources SET last_signer = ? WHERE name = ?",
                     (entry.fingerprint, src))
        window = meta.get("window") or {}
        cur = conn.execute(
            "INSERT INTO bundles (source, sequence, sha256, bundle_id, prev_hash, signer, "
            "signer_name, file, size, created_at, window_first, window_last, header_counts, "
            "media_label, media_serial, received_at, ingested_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (src, seq, item.sha256, meta["bundle_id"], meta.get("prev_hash"),
             entry.fingerprint, entry.public.name, item.bundle_file, item.size,
             meta["created_at"], window.get("first"), window.get("last"),
             canonical.dumps(meta["counts"]).decode(), run.media_label, run.media_serial,
             now, now))
        key = tombstones.load_key(run.home.path, conn)
        region = run.cfg.region_for(meta.get("context", {}).get("phone_region"))
        loader = Loader(conn, source=src, bundle=int(cur.lastrowid or 0), sequence=seq,
                        region=region, retention_days=run.cfg.retention_for(src), now=now,
                        tombstone=tombstones.Filter(conn, key, src, region) or None,
                        purged=purges.Marks(conn, key, src) or None)
        _items(run, b, loader, item.bundle_file, meta)
        _fault("loaded")
        archived = archive.place(run.home.path, item.path, meta["source"], meta["sequence"])
        _fault("archived")
        note = chain.gap_note(conn, meta)
        counts = loader.counts.as_dict()
        conn.execute("UPDATE bundles SET archive_path = ?, counts = ?, note = ?, "
                     "ingested_at = ? WHERE id = ?",
                     (str(archived.relative_to(run.home.path)), canonical.dumps(counts).decode(),
                      note, timestamps.now_utc(), cur.lastrowid))
        quarantine.resolve_by(conn, item.bundle_file, item.sha256, f"{src} #{seq}")
        audit.append(conn, "ingest", target=f"bundle:{src}#{seq}",
                     detail={"sha256": item.sha256, "bundle_id": meta["bundle_id"],
                             "signer": entry.fingerprint, **counts})
        _fault("before-commit")
    _fault("committed")
    erased = f", {counts['tombstoned']} left out (erased)" if counts["tombstoned"] else ""
    if counts["purged"]:
        erased += f", {counts['purged']} left out (purged)"
    log.info("ingested %s (%s #%d): %d conversations (%d new, %d updated%s), %d messages%s",
             item.bundle_file, src, seq, counts["conversations"], counts["new"],
             counts["updated"], erased, counts["messages"], f"; {note}" if note else "")
    return Outcome(item.bundle_file, item.sha256, "ingested", note, meta, counts)


def _items(run: _Run, b: Bundle, loader: Loader, name: str, meta: dict[str, Any]) -> None:
    declared = meta["counts"].get("conversations")
    task = run.progress.add_task(name, total=declared) if run.progress else None
    n = 0
    ids = bundleids.IdLedger()
    for item in b.items(run.identity):
        if isinstance(item, Record):
            n += 1
            try:
                _record(loader, item.data, f"{name}: record {n}", meta["source"], ids, n)
            except (ChatvaultError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - named by its record (see _one)
                raise _unexpected(exc, name, n) from exc
            if task is not None and n % 200 == 0:
                run.progress.update(task, completed=n)
        else:
            loader.add_blob(item.sha256, item.size, item.content)
    loader.flush()
    repeat = ids.repeat()  # checked before the bundle's transaction commits
    if repeat is not None:
        raise InvalidRecord(f"{name}: record {repeat[1]}: field 'conversation_id': the same "
                            f"id as record {repeat[0]}; a bundle holds each conversation once")
    if task is not None:
        run.progress.update(task, completed=n)
    if declared is not None and declared != n:
        raise CorruptPayload(f"header declares {declared} conversations, payload holds {n}",
                             path=name)


def _record(loader: Loader, line: bytes, where: str, source: str, ids: bundleids.IdLedger,
            n: int) -> None:
    """Validate one record against its bundle and upsert it."""
    # canonical bytes first (a canonical record is vouched for in C), then the
    # dict the loader walks
    data, summary = records.canonical_line(line, where)
    ids.add(summary.conversation_id, n)
    if summary.source is not None and summary.source != source:
        # the signed header says where the bundle belongs; a record may not say otherwise
        raise InvalidRecord(f"{where}: field 'source': {summary.source[:80]!r}, but the "
                            f"bundle's header says {source!r}")
    loader.add(canonical.loads(data), data, summary.last_at)


# -- receipts, progress ------------------------------------------------------

def _finish(run: _Run, item: staging.Staged, outcome: Outcome) -> None:
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
