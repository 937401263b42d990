"""One staged bundle into the store: the steps 0 to 5 of :mod:`vault.ingest`.

:func:`one` turns one staged bundle into its :class:`Outcome`: refused on
its first bytes, a duplicate, quarantined, or verified, checked against the
chain and loaded record by record inside one store transaction, archived
before the commit. What no step expected (a bug) quarantines that bundle
alone, naming the record (:func:`unexpected`); the vault's own disk failing
stops the run. Receipts, staging and the run as a whole stay in
:mod:`vault.ingest`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from vault import archive, atomic, audit, bundleids, canonical, chain, purges, quarantine
from vault import records, staging, store, timestamps, tombstones, vaultconfig
from vault.bundle import Bundle, Record
from vault.errors import (EXIT_OK, ChatvaultError, CorruptPayload, IngestFailed,
                          InvalidRecord, MediaError, MediaIOError)
from vault.home import Home
from vault.keys import Identity
from vault.upsert import Loader

log = logging.getLogger("vault.ingest")  # the name operators filter ingest logs by


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
class Run:
    """What every bundle of one ingest run shares."""

    home: Home
    conn: Any
    cfg: vaultconfig.VaultConfig
    identity: Identity
    trust: Any
    media_label: str | None
    media_serial: str | None
    fault: Callable[[str], None]  # the run's test hook: called with each step's name
    progress: Any = None


def one(run: Run, item: staging.Staged) -> Outcome:
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
            run.fault("verified")
            try:
                return _load(run, item, b, meta, entry)
            except (ChatvaultError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - one bundle must not stop the others
                if getattr(exc, "injected_crash", False):
                    raise  # a test standing for the process dying here
                # rolled back by store.transaction; kept in quarantine like any refusal
                raise unexpected(exc, item.bundle_file) from exc
    except ChatvaultError as exc:
        if isinstance(exc, MediaError):
            raise  # the vault's own disk: not the bundle's fault
        return _refused(item, quarantine.refuse(run.home.path, run.conn, item,
                                                item.as_known(exc), meta, media_id))


def unexpected(exc: Exception, name: str, record: int | None = None) -> ChatvaultError:
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


def _load(run: Run, item: staging.Staged, b: Bundle, meta: dict[str, Any],
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
        run.fault("loaded")
        archived = archive.place(run.home.path, item.path, meta["source"], meta["sequence"])
        run.fault("archived")
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
        run.fault("before-commit")
    run.fault("committed")
    erased = f", {counts['tombstoned']} left out (erased)" if counts["tombstoned"] else ""
    if counts["purged"]:
        erased += f", {counts['purged']} left out (purged)"
    log.info("ingested %s (%s #%d): %d conversations (%d new, %d updated, %d merged%s), "
             "%d messages%s", item.bundle_file, src, seq, counts["conversations"],
             counts["new"], counts["updated"], counts["merged"], erased, counts["messages"],
             f"; {note}" if note else "")
    return Outcome(item.bundle_file, item.sha256, "ingested", note, meta, counts)


def _items(run: Run, b: Bundle, loader: Loader, name: str, meta: dict[str, Any]) -> None:
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
            except Exception as exc:  # noqa: BLE001 - named by its record (see one)
                raise unexpected(exc, name, n) from exc
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

