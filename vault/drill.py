"""Restore drills: the whole restore loop, run on the vault, checked record by record.

GDPR Art. 32(1)(c)-(d) asks for the ability to restore in a timely manner
and for regular testing of it. A drill, in steps that are each timed:

``select``
    archived bundles, all or a random sample (:class:`random.SystemRandom`);
``archive``
    each sampled bundle is opened from ``H/archive/`` as ingest opened it
    (exporter trust, signature, decryption) and each record's hash kept;
``restore_create``
    a throwaway drill identity is made, and a restore set of the sampled
    conversations the store holds is sealed to it (:mod:`vault.restore`);
``restore_open``
    the set is opened in a scratch folder as the online side would
    (:mod:`vault.restoreopen`, trusting only the vault's key);
``compare``
    every record is compared by SHA-256: archive against store (after the
    tombstone filter: a record erased since must be absent, one that only
    mentions an erased subject must be stored redacted), store against
    what the restore brought back. Records erased, purged by retention or
    restricted are expected to be absent and are counted as such. A store
    record that merges earlier messages in (:mod:`vault.merge`) matches the
    archived record of its own bundle when it holds its fields, participants
    and messages unchanged (counted ``kept_earlier`` too); a record a newer
    bundle superseded must still have each of its message ids in the store
    (the newer bundle's version of a message wins) and is otherwise
    compared store against restore only.
    An archived bundle that cannot be read, or a restore step that fails,
    is a mismatch too: the report is still written.

The report (:mod:`vault.signed`, kind ``drill-report``) names bundles and
record positions, never conversation content or ids; it is signed by the
vault, kept in ``H/reports/`` and recorded in the audit log. Its
``recovery_seconds`` (create + open) is the measured recovery time for the
sample. Decrypted conversations exist only in a scratch folder inside the
vault's home (its encrypted volume), removed when the drill ends.

Kept reports and what ``vault status`` says of them are in
:mod:`vault.drillreports`.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from vault import __version__, atomic, audit, canonical, keys, records, restore
from vault import merge, purges, restoreopen, signed, store, timestamps, tombstones
from vault import vaultconfig
from vault.bundle import Bundle, Record
from vault.errors import ChatvaultError, UsageError
from vault.drillreports import KIND, PREFIX
from vault.home import Home
from vault.trust import TrustStore

log = logging.getLogger(__name__)

DEFAULT_SAMPLE = 3


@dataclass
class _Tally:
    """What the comparison found; mismatches name bundles and positions only."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("records", "compared", "matched", "erased", "purged", "restricted", "redacted",
         "superseded", "kept_earlier", "restored", "attachments"), 0))
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def bad(self, check: str, **where: Any) -> None:
        self.mismatches.append({"check": check, **where})


@dataclass
class _Held:
    """A conversation the drill looks at: where the archive has it, what it should be."""

    key: tuple[str, str]
    bundle: dict[str, Any]
    position: int | None = None  # record number in the archived bundle
    archived: str | None = None  # hash of the archived record after the tombstone filter
    erased: bool = False
    expires: str | None = None
    purged: bool = False  # a retention purge marker covers this version (vault.purges)
    shape: merge.Print | None = None  # to find it in a merged store record


class _Clock:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._t = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.steps[step] = round(now - self._t, 6)
        self._t = now


# -- running a drill --------------------------------------------------------------------------

def run(home: Path, *, sample: int | None = DEFAULT_SAMPLE, every: bool = False,
        passphrase_file: Path | None = None) -> dict[str, Any]:
    """Run one drill; returns the signed report (also kept and audited)."""
    home = Path(home)
    h = Home(home).require()
    identity = h.identity(passphrase_file)
    drill_id = uuid.uuid4().hex
    started = timestamps.now_utc()
    clock = _Clock()
    tally = _Tally()
    scratch = home / "staging" / f".drill-{drill_id[:16]}{atomic.TMP_MARK}x"
    scratch.mkdir(parents=True, mode=0o700)
    conn = store.open_store(home / store.FILE_NAME)
    try:
        picked = _pick(conn, sample, every)
        clock.lap("select")
        held = _read_archive(home, conn, h, identity, picked, tally)
        clock.lap("archive")
        present = _compare_store(home, conn, held, tally)
        try:
            made, opened = _restore_loop(home, identity, present, scratch, clock)
        except ChatvaultError as exc:
            # the loop itself broke: that is the drill's finding, reported like the others
            tally.bad("restore_failed", code=exc.code)
            made = opened = None
            clock.lap("restore_failed")
        _compare_restore(conn, present, made, opened, tally)
        clock.lap("compare")
    finally:
        conn.close()
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(identity, drill_id, started, picked, tally, clock, sample, every)
    path = _keep(home, report)
    body = report["body"]
    audit.append_to_home(home, "drill", target=f"drill:{drill_id}", purpose="restore drill",
                         detail={"passed": body["passed"], "bundles": len(picked),
                                 "mismatches": len(tally.mismatches),
                                 "records": tally.counts["records"],
                                 "recovery_seconds": body["recovery_seconds"],
                                 "report": path.name})
    log.info("drill %s: %s, %d bundle(s), %d record(s), %d mismatch(es), recovery %.2f s",
             drill_id[:16], "passed" if body["passed"] else "FAILED", len(picked),
             tally.counts["records"], len(tally.mismatches), body["recovery_seconds"])
    return report


def _pick(conn: Any, sample: int | None, every: bool) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT id, source, sequence, sha256, archive_path FROM bundles "
                       "WHERE archive_path IS NOT NULL ORDER BY source, sequence")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur]
    if not rows:
        raise UsageError("no archived bundles to drill with: ingest something first")
    if every or sample is None or sample >= len(rows):
        return rows
    if sample < 1:
        raise UsageError("--sample must be at least 1")
    chosen = random.SystemRandom().sample(rows, sample)
    return sorted(chosen, key=lambda r: (r["source"], r["sequence"]))


def _read_archive(home: Path, conn: Any, h: Home, identity: keys.Identity,
                  picked: list[dict[str, Any]], tally: _Tally) -> list[_Held]:
    """Every record of the sampled bundles, and the conversations the store took from them."""
    cfg = vaultconfig.load(home)
    key = tombstones.load_key(home, conn)
    trust = h.trust()
    held: list[_Held] = []
    for b in picked:
        seen: set[tuple[str, str]] = set()
        where = {"source": b["source"], "sequence": b["sequence"]}
        region = tombstones.region_of_bundle(conn, home, b["id"], cfg.phone_region)
        flt = tombstones.Filter(conn, key, b["source"], region)
        days = cfg.retention_for(b["source"])
        marks = purges.Marks(conn, key, b["source"])
        try:
            with Bundle(home / b["archive_path"]) as bundle:
                bundle.check_signer(trust, "exporter")
                if bundle.verify_signature() != b["sha256"]:
                    raise ChatvaultError("archived file differs from the bundle ingested")
                n = 0
                for item in bundle.items(identity):
                    if isinstance(item, Record):
                        n += 1
                        held.append(_held(b, n, item.data, flt, days, marks))
                        seen.add(held[-1].key)
        except (ChatvaultError, OSError) as exc:
            code = getattr(exc, "code", "media")
            tally.bad("archive_unreadable", **where, code=code)
            log.warning("drill: archived %s #%d cannot be read: %s", b["source"],
                        b["sequence"], code)
        for src, cid in conn.execute("SELECT source, conversation_id FROM conversations "
                                     "WHERE bundle = ?", (b["id"],)):
            if (src, cid) not in seen:
                held.append(_Held((src, cid), b))
    tally.counts["records"] = len(held)
    return held


def _held(b: dict[str, Any], n: int, data: bytes, flt: Any, days: int,
          marks: purges.Marks) -> _Held:
    conv = canonical.loads(data)
    summary = records.validate(conv, f"{b['source']} #{b['sequence']} record {n}")
    shown = flt.apply(conv) if flt else conv
    digest = None if shown is None else records.content_hash(canonical.dumps(shown))
    out = _Held((b["source"], summary.conversation_id), b, n, digest, erased=shown is None,
                shape=None if shown is None else merge.fingerprint(shown))
    stamps = [t for t in (conv.get("started_at"), conv.get("ended_at"), conv.get("updated_at"),
                          summary.last_at) if isinstance(t, str)]
    if stamps:
        last = max(timestamps.parse(t) for t in stamps)
        # purged is what the markers say; expires also covers a purge not yet run
        out.purged = bool(marks) and marks(summary.conversation_id, timestamps.format_utc(last))
        if days:
            out.expires = timestamps.format_utc(last + timedelta(days=days))
    return out


def _compare_store(home: Path, conn: Any, held: list[_Held],
                   tally: _Tally) -> dict[tuple[str, str], str]:
    """Archive against store; returns {key: stored hash} of what the store holds."""
    now = timestamps.now_utc()
    present: dict[tuple[str, str], str] = {}
    c = tally.counts
    for item in held:
        where = {"source": item.bundle["source"], "sequence": item.bundle["sequence"],
                 "record": item.position}
        row = conn.execute("SELECT content_sha256, bundle_sequence, record FROM "
                           "conversations WHERE source = ? AND conversation_id = ?",
                           item.key).fetchone()
        if row is None:
            if item.erased:
                c["erased"] += 1
            elif item.purged or (item.expires and
                                 timestamps.parse(item.expires) <= timestamps.parse(now)):
                c["purged"] += 1
            else:
                tally.bad("missing_from_store", **where)
            continue
        present[item.key] = row[0]
        if records.content_hash(row[2].encode("utf-8")) != row[0]:
            tally.bad("store_record_damaged", **where)
            continue
        if item.archived is None or row[1] > item.bundle["sequence"]:
            c["superseded"] += item.archived is not None
            if item.shape is not None and row[0] != item.archived and not merge.holds(
                    canonical.loads(row[2]), item.shape, same_sequence=False):
                tally.bad("message_missing_from_store", **where)
            continue
        c["compared"] += 1
        if item.erased:
            tally.bad("erased_but_stored", **where)
        elif row[1] < item.bundle["sequence"]:
            tally.bad("store_older_than_archive", **where)
        elif row[0] != item.archived:
            if item.shape is not None and merge.holds(canonical.loads(row[2]), item.shape,
                                                      same_sequence=True):
                c["matched"] += 1
                c["kept_earlier"] += 1  # a merged record: earlier messages kept beside it
            else:
                tally.bad("store_differs_from_archive", **where)
        else:
            c["matched"] += 1
    return present


def _restore_loop(home: Path, identity: keys.Identity, present: dict[tuple[str, str], str],
                  scratch: Path, clock: _Clock) -> tuple[Any, Any]:
    """Seal the held conversations to a throwaway key, then open them as the online side."""
    drill_key = keys.generate(f"drill-{scratch.name[7:15]}", "drill")
    out = scratch / "bundles"
    out.mkdir()
    if not present:
        clock.lap("restore_create")
        clock.lap("restore_open")
        return None, None
    made = restore.create(home, identity, [drill_key.public()],
                          restore.Selection(keys=tuple(sorted(present))), out,
                          purpose="restore drill")
    clock.lap("restore_create")
    online = TrustStore.empty(scratch)
    online.trust(keys.public_key_text(identity), "vault", "the vault's own key")
    opened = restoreopen.open_bundles([Path(p["path"]) for p in made.parts], drill_key,
                                      online, scratch / "opened")
    clock.lap("restore_open")
    return made, opened


def _compare_restore(conn: Any, present: dict[tuple[str, str], str], made: Any, opened: Any,
                     tally: _Tally) -> None:
    """Store against what came back; restricted conversations are expected to stay."""
    c = tally.counts
    if made is None:
        return
    c["restricted"] += made.excluded.get("restricted", 0)
    c["redacted"] += made.redacted
    c["restored"] = opened.conversations
    c["attachments"] = opened.blobs
    back: dict[tuple[str, str], str] = opened.hashes
    left_out = sum(made.excluded.values())
    for key, sha in sorted(present.items()):
        got = back.get(key)
        if got is None or key in made.redacted_keys:
            continue  # left out, or redacted on the way out (a restricted subject)
        c["compared"] += 1
        if got == sha:
            c["matched"] += 1
        else:
            tally.bad("restored_differs_from_store", source=key[0], store_row=_row(conn, key))
    lost = len(present) - left_out - sum(1 for k in present if k in back)
    if lost > 0:
        tally.bad("missing_from_restore", count=lost)
    extra = [k for k in back if k not in present]
    if extra:
        tally.bad("unexpected_in_restore", count=len(extra))
    if opened.blobs != made.blobs:
        tally.bad("attachments_differ", sealed=made.blobs, opened=opened.blobs)


def _row(conn: Any, key: tuple[str, str]) -> int | None:
    row = conn.execute("SELECT id FROM conversations WHERE source = ? AND conversation_id = ?",
                       key).fetchone()
    return row[0] if row else None


# -- the report ------------------------------------------------------------------------------

def _report(identity: keys.Identity, drill_id: str, started: str, picked: list[dict[str, Any]],
            tally: _Tally, clock: _Clock, sample: int | None, every: bool) -> dict[str, Any]:
    steps = clock.steps
    body = {
        "kind": KIND, "drill_id": drill_id, "vault": identity.fingerprint,
        "started_at": started, "at": timestamps.now_utc(), "software": f"chatvault {__version__}",
        "mode": "all" if every or sample is None else f"sample {sample}",
        "bundles": [{k: b[k] for k in ("source", "sequence", "sha256")} for b in picked],
        "counts": tally.counts, "mismatches": tally.mismatches[:1000],
        "mismatch_count": len(tally.mismatches), "passed": not tally.mismatches,
        "steps": steps, "total_seconds": round(sum(steps.values()), 6),
        "recovery_seconds": round(steps.get("restore_create", 0.0)
                                  + steps.get("restore_open", 0.0), 6),
    }
    return signed.sign(body, identity)


def _keep(home: Path, report: dict[str, Any]) -> Path:
    body = report["body"]
    stamp = "".join(ch for ch in body["at"] if ch.isdigit())[:14]
    folder = home / "reports"
    folder.mkdir(exist_ok=True, mode=0o700)
    path = folder / f"{PREFIX}{stamp}-{body['drill_id'][:12]}.json"
    atomic.write_bytes(path, signed.dumps(report), 0o600)
    return path
