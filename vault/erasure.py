"""Erasure (GDPR Art. 17) that stays erased.

``chatvault erase`` takes a subject (identifiers, or a DSAR case's), and:

1. **plans**: every conversation the subject is found in (subject search,
   exact matches and phone digits stored without a country code, never a
   name alone), each decided by the very filter ingest uses
   (:class:`vault.tombstones.Filter`) with the tombstones this erasure will
   add: conversations where the subject is the customer are removed, the
   others keep their text with the subject's identifiers redacted. The
   customer's platform and customer ids found there are erased with them,
   so an old bundle naming the person only by a platform id is caught too;
2. **refuses** (exit 4, naming the holds) when a legal hold covers anything
   in scope: nothing is erased;
3. with ``[erasure] four_eyes = true``, stops as a **pending** request that a
   different operator approves (``erase approve ID``);
4. **executes** in one transaction: tombstones (keyed hashes) first, then
   the conversations, the redacted copies, the attachments no one else
   refers to, the identifiers in DSAR cases; then, outside it, the store is
   **scrubbed**: the FTS5 index optimised into one new segment (the old
   segments' pages are freed and, with ``secure_delete``, zeroed), the WAL
   checkpointed and truncated, and the files scanned for the subject's
   bytes as they were written; a VACUUM follows if any remain.

What is not erased: the sealed bundles in the archive (encrypted, the
source of truth, and not editable without breaking their signatures); the
tombstones are what keeps their content from coming back.
"""

from __future__ import annotations

import mmap
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault import audit, canonical, records, statehook, store, timestamps, tombstones
from vault.errors import ChatvaultError, LegalHoldBlocks, PolicyRefused, UsageError
from vault.subjects import Subject, VaultHandle

@dataclass
class Item:
    conv: int
    source: str
    conversation_id: str
    action: str  # drop | redact
    redacted: dict[str, Any] | None = None
    attachments: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What an erasure will do; nothing here holds the identifiers in clear."""

    pairs: list[tuple[str, str]]
    items: list[Item]
    held: dict[int, list[str]]
    needles: set[bytes] = field(default_factory=set, repr=False)

    @property
    def dropped(self) -> list[Item]:
        return [i for i in self.items if i.action == "drop"]

    @property
    def redacted(self) -> list[Item]:
        return [i for i in self.items if i.action == "redact"]

    def holds(self) -> list[str]:
        return sorted({n for names in self.held.values() for n in names})

    def as_dict(self) -> dict[str, Any]:
        return {"remove": [f"{i.source}/{i.conversation_id}" for i in self.dropped],
                "redact": [f"{i.source}/{i.conversation_id}" for i in self.redacted],
                "identifiers": len(self.pairs), "held_by": self.holds(),
                "held_conversations": len(self.held)}


def _pairs(subject: Subject) -> list[tuple[str, str]]:
    pairs = subject.exact()
    return pairs + [("phone_unparsed", d) for d in subject.unparsed_forms()
                    if ("phone_unparsed", d) not in pairs]


def _record(conn: sqlite3.Connection, conv: int) -> tuple[dict[str, Any], int]:
    text, bundle = conn.execute("SELECT record, bundle FROM conversations WHERE id = ?",
                                (conv,)).fetchone()
    return canonical.loads(text), bundle


def plan(v: VaultHandle, subject: Subject) -> Plan:
    """Decide, conversation by conversation, what erasing ``subject`` does."""
    from vault import holds, subjects

    pairs = _pairs(subject)
    matches = [m for m in subjects.find(v.conn, subject) if m.exact or m.digits]
    # The customer's other ids (platform, customer id) are erased with them.
    extra = Subject(platform_ids=[], customer_ids=[])
    for kind, value in v.conn.execute(
            "SELECT DISTINCT x.kind, x.value FROM identifiers i JOIN identifiers x "
            "ON x.conversation = i.conversation AND x.participant_id = i.participant_id "
            "JOIN participants p ON p.conversation = i.conversation "
            "AND p.participant_id = i.participant_id "
            "WHERE p.role = 'customer' AND x.kind IN ('platform_id', 'customer_id') "
            f"AND (i.kind, i.value) IN ({','.join('(?, ?)' for _ in pairs)})",
            [x for p in pairs for x in p]):
        if (kind, value) not in pairs:
            pairs.append((kind, value))
            (extra.platform_ids if kind == "platform_id" else extra.customer_ids).append(value)
    if not extra.empty():
        seen = {m.conv for m in matches}
        matches += [m for m in subjects.find(v.conn, extra) if m.conv not in seen]

    every = {(k, h) for k, h in v.conn.execute("SELECT kind, hash FROM tombstones")}
    every |= {(k, v.key.hash(tombstones.PURPOSE_TOMBSTONE, k, val)) for k, val in pairs}
    filters: dict[str | None, tombstones.Filter] = {}
    regions: dict[int, str | None] = {}
    out = Plan(pairs, [], {})
    for m in matches:
        conv, bundle_row = _record(v.conn, m.conv)
        region = tombstones.region_of_bundle(v.conn, v.home, bundle_row, v.region, regions)
        f = filters.setdefault(region, tombstones.Filter(None, v.key, m.source, region,
                                                         hashes=every))
        f.source = m.source
        decision = f.decide(conv)
        if decision.action == "keep":
            continue
        item = Item(m.conv, m.source, m.conversation_id, decision.action,
                    decision.conversation, decision.attachments_dropped)
        if decision.action == "drop":
            item.attachments = [a["sha256"] for msg in conv["messages"]
                                for a in msg.get("attachments") or ()
                                if isinstance(a.get("sha256"), str)]
        out.items.append(item)
        out.needles |= _needles(conv, decision, pairs, region)
    out.held = holds.covering(v.conn, v.key, [i.conv for i in out.items])
    return out


def _needles(conv: dict[str, Any], decision: tombstones.Decision,
             pairs: list[tuple[str, str]], region: str | None) -> set[bytes]:
    """The subject's identifiers as written, to look for in the files afterwards."""
    from vault import identifiers

    wanted = {val for _, val in pairs}
    found = {val for k, val in pairs if k in ("email", "phone") and len(val) >= 6}
    texts = [m["text"] for m in conv["messages"]]
    for text in texts:
        for span in identifiers.spans(text, region):
            if span.value in wanted:
                found.add(text[span.start:span.end])
    for p in conv["participants"]:
        for key in ("email", "phone"):
            raw = p.get(key)
            if isinstance(raw, str) and (identifiers.normalise_email(raw) in wanted or
                                         identifiers.normalise_phone(raw, region) in wanted):
                found.add(raw)
    return {s.strip().encode("utf-8") for s in found if len(s.strip()) >= 6}


# -- requests, approval, execution -----------------------------------------------------

def four_eyes(v: VaultHandle) -> bool:
    value = (v.cfg.raw.get("erasure") or {}).get("four_eyes", False)
    if not isinstance(value, bool):
        from vault.errors import ConfigError

        raise ConfigError("key 'erasure.four_eyes': expected true or false",
                          path=v.cfg.path)
    return value


def refuse_if_held(v: VaultHandle, p: Plan, reason: str, erasure_id: str | None) -> None:
    """Exit 4 naming the holds (and log the refusal) when anything in scope is held."""
    if not p.held:
        return
    names = p.holds()
    audit.append(v.conn, "erase.refused", target=v.target(p.pairs[:4]), purpose=reason,
                 detail={"erasure": erasure_id, "holds": names,
                         "held_conversations": len(p.held)})
    if erasure_id:
        with store.transaction(v.conn):
            v.conn.execute("UPDATE erasures SET note = ? WHERE id = ?",
                           (f"refused: legal hold {', '.join(names)}", erasure_id))
    raise LegalHoldBlocks(f"nothing erased: {len(p.held)} conversation(s) in scope are "
                          f"under legal hold {', '.join(names)}; release the hold "
                          "('chatvault hold release NAME') or narrow the request")


def request(v: VaultHandle, subject: Subject, reason: str,
            case_id: str | None = None, requested_by: str | None = None) -> str:
    """Record an erasure request; returns its id (``E-<n>``).

    ``requested_by`` names who asked when it is not the operator at the vault
    (a signed request from media: ``request:<fingerprint>``).
    """
    if not reason.strip():
        raise UsageError("--reason is required (it goes into the audit log)")
    now, who = timestamps.now_utc(), requested_by or audit.operator()
    with store.transaction(v.conn):
        n = v.conn.execute("SELECT count(*) FROM erasures").fetchone()[0]
        eid = f"E-{n + 1:04d}"
        v.conn.execute("INSERT INTO erasures (id, case_id, reason, status, requested_at, "
                       "requested_by) VALUES (?, ?, ?, 'pending', ?, ?)",
                       (eid, case_id, reason, now, who))
        v.conn.executemany("INSERT INTO erasure_subjects (erasure_id, kind, value) "
                           "VALUES (?, ?, ?)", [(eid, k, val) for k, val in subject.exact()])
        audit.append(v.conn, "erase.request", target=v.target(subject.exact()),
                     purpose=reason, detail={"erasure": eid, "case": case_id})
    return eid


def pending_subject(v: VaultHandle, erasure_id: str) -> tuple[Subject, dict[str, Any]]:
    row = v.conn.execute("SELECT id, status, requested_by, reason, case_id FROM erasures "
                         "WHERE id = ?", (erasure_id,)).fetchone()
    if row is None:
        raise UsageError(f"no erasure request {erasure_id!r} (see 'chatvault erase list')")
    info = dict(zip(("id", "status", "requested_by", "reason", "case_id"), row))
    if info["status"] != "pending":
        raise UsageError(f"erasure {erasure_id} is {info['status']}, not pending")
    s = Subject()
    for kind, value in v.conn.execute("SELECT kind, value FROM erasure_subjects WHERE "
                                      "erasure_id = ?", (erasure_id,)):
        {"email": s.emails, "phone": s.phones, "platform_id": s.platform_ids,
         "customer_id": s.customer_ids}[kind].append(value)
    return s, info


def approve(v: VaultHandle, erasure_id: str, approver: str | None = None) -> dict[str, Any]:
    """The second pair of eyes: a different operator approves, and it is executed.

    ``approver`` names the second pair of eyes when it is not the operator at
    the vault (a second DPO signature on a request: ``dpo:<fingerprint>``).
    """
    subject, info = pending_subject(v, erasure_id)
    who = approver or audit.operator()
    if who == info["requested_by"]:
        audit.append(v.conn, "erase.approve-refused", target=f"erasure:{erasure_id}",
                     detail={"reason": "same operator"})
        raise PolicyRefused(f"erasure {erasure_id} was requested by {who}; a different "
                            "operator must approve it (four-eyes rule)")
    with store.transaction(v.conn):
        v.conn.execute("UPDATE erasures SET approved_at = ?, approved_by = ? WHERE id = ?",
                       (timestamps.now_utc(), who, erasure_id))
        audit.append(v.conn, "erase.approve", target=f"erasure:{erasure_id}",
                     purpose=info["reason"])
    return execute(v, erasure_id, subject, info["reason"])


def execute(v: VaultHandle, erasure_id: str, subject: Subject, reason: str) -> dict[str, Any]:
    """Erase now (holds checked again), scrub the files, prove it; returns counts."""
    p = plan(v, subject)
    refuse_if_held(v, p, reason, erasure_id)
    counts = _apply(v, p, erasure_id, subject, reason)
    statehook.changed(v.home, "tombstones")
    counts["scrub"] = scrub(v.home, v.conn, p.needles)
    with store.transaction(v.conn):
        v.conn.execute("UPDATE erasures SET counts = ? WHERE id = ?",
                       (canonical.dumps(counts).decode(), erasure_id))
    return counts


def _apply(v: VaultHandle, p: Plan, erasure_id: str, subject: Subject,
           reason: str) -> dict[str, Any]:
    from vault.upsert import Loader

    conn, now = v.conn, timestamps.now_utc()
    with store.transaction(conn):
        added = sum(tombstones.add(conn, v.key, k, val, origin=erasure_id)
                    for k, val in p.pairs)
        blobs: set[str] = set()
        for item in p.dropped:
            blobs.update(item.attachments)
            store.delete_conversation(conn, item.conv)
        for item in p.redacted:
            assert item.redacted is not None
            blobs.update(item.attachments)
            bundle, seq = conn.execute("SELECT bundle, bundle_sequence FROM conversations "
                                       "WHERE id = ?", (item.conv,)).fetchone()
            loader = Loader(conn, source=item.source, bundle=bundle, sequence=seq,
                            region=_region_for(v, bundle), now=now,
                            retention_days=v.cfg.retention_for(item.source))
            data, summary = records.canonical_record(item.redacted, item.conversation_id)
            loader.add(item.redacted, data, summary.last_at)
            loader.flush()
        gone = _drop_blobs(conn, v.key, blobs, erasure_id)
        _scrub_cases(v, p.pairs)
        conn.execute("DELETE FROM erasure_subjects WHERE erasure_id = ?", (erasure_id,))
        counts = {"conversations_removed": len(p.dropped),
                  "conversations_redacted": len(p.redacted), "attachments_removed": gone,
                  "tombstones_added": added}
        conn.execute("UPDATE erasures SET status = 'done', done_at = ?, counts = ? "
                     "WHERE id = ?", (timestamps.now_utc(), canonical.dumps(counts).decode(),
                                      erasure_id))
        audit.append(conn, "erase", target=v.target(subject.exact()), purpose=reason,
                     detail={"erasure": erasure_id, **counts})
    return counts


def _region_for(v: VaultHandle, bundle: int) -> str | None:
    return tombstones.region_of_bundle(v.conn, v.home, bundle, v.region)


def _drop_blobs(conn: sqlite3.Connection, key: tombstones.IdentifierKey, blobs: set[str],
                erasure_id: str) -> int:
    """Remove attachment content nobody else refers to; tombstone it. Returns the count."""
    gone = 0
    for sha in sorted(blobs):
        if conn.execute("SELECT 1 FROM attachment_refs WHERE sha256 = ? LIMIT 1",
                        (sha,)).fetchone():
            continue  # someone else sent or received the same file: kept
        conn.execute("DELETE FROM attachment_chunks WHERE sha256 = ?", (sha,))
        gone += conn.execute("DELETE FROM attachments WHERE sha256 = ?", (sha,)).rowcount
        tombstones.add(conn, key, "attachment", sha, origin=erasure_id)
    return gone


def _scrub_cases(v: VaultHandle, pairs: list[tuple[str, str]]) -> None:
    """DSAR cases about the subject keep a keyed hash instead of the identifier."""
    for kind, value in pairs:
        v.conn.execute("UPDATE dsar_subjects SET value = ?, erased = 1 WHERE kind = ? AND "
                       "value = ? AND erased = 0",
                       (v.key.hash(tombstones.PURPOSE_AUDIT, kind, value), kind, value))


# -- scrubbing the files -------------------------------------------------------------------

class ErasureIncomplete(ChatvaultError):
    """The subject's bytes are still in the store's files after every scrub step."""

    code = "erasure_incomplete"


def scrub(home: Path, conn: sqlite3.Connection,
          needles: set[bytes] | None = None) -> dict[str, Any]:
    """Leave no deleted byte in ``store.db`` or its WAL; prove it for ``needles``.

    FTS5 keeps deleted terms in old segments until they are merged:
    'optimize' merges every segment into one, freeing (and, with
    secure_delete, zeroing) the old pages. Then a TRUNCATE checkpoint moves
    every page into the database and empties the WAL. If a scan still
    finds a needle (a free page that escaped zeroing), VACUUM rewrites the
    file and the scan runs again.
    """
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
    _checkpoint(conn)
    paths = [Path(home) / store.FILE_NAME, Path(home) / (store.FILE_NAME + "-wal")]
    needles = needles or set()
    found = byte_scan(paths, needles)
    vacuumed = False
    if found:
        conn.execute("VACUUM")
        _checkpoint(conn)
        vacuumed = True
        found = byte_scan(paths, needles)
    if found:
        raise ErasureIncomplete(f"{found} trace(s) of the subject remain in the store's "
                                "files after optimize, checkpoint and VACUUM; do not hand "
                                "the store on, and report this")
    return {"fts_optimized": True, "wal_truncated": True, "vacuum": vacuumed,
            "scanned_for": len(needles), "found": 0}


def _checkpoint(conn: sqlite3.Connection, attempts: int = 3) -> None:
    """TRUNCATE checkpoint; each attempt already waits out the busy timeout."""
    for _ in range(attempts):
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return
        time.sleep(0.5)
    raise ErasureIncomplete("the WAL could not be truncated: another process keeps the "
                            "store open (stop the daemon and run the command again)")


def byte_scan(paths: list[Path], needles: set[bytes]) -> int:
    """How many of ``needles`` occur (any letter case) in the files at ``paths``."""
    if not needles:
        return 0
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(needles)), re.IGNORECASE)
    hits = 0
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            hits += sum(1 for _ in pattern.finditer(mm))  # type: ignore[arg-type]
    return hits


def listing(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT id, case_id, status, reason, requested_at, requested_by, "
                       "approved_at, approved_by, done_at, counts, note FROM erasures "
                       "ORDER BY requested_at, id")
    names = [d[0] for d in cur.description]
    out = []
    for row in cur:
        item = dict(zip(names, row))
        item["counts"] = canonical.loads(item["counts"]) if item["counts"] else None
        out.append(item)
    return out
