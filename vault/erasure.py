"""Erasure (GDPR Art. 17) that stays erased.

``chatvault erase`` takes a subject (identifiers, or a DSAR case's), and:

1. **plans** (:mod:`vault.erasureplan`): every conversation holding the
   subject, found by subject search and by a scan of every stored record,
   each decided by the very filter ingest uses
   (:class:`vault.tombstones.Filter`) with the tombstones this erasure will
   add: conversations where the subject is the customer are removed, the
   others keep their text with the subject's identifiers redacted in every
   string of the record;
2. **refuses** (exit 4, naming the holds) when a legal hold covers anything
   in scope: nothing is erased;
3. with ``[erasure] four_eyes = true``, stops as a **pending** request that a
   different operator approves (``erase approve ID``);
4. **executes** in one transaction: tombstones (keyed hashes) first, then
   the conversations, the redacted copies, the attachments no one else
   refers to, the identifiers in DSAR cases; the erasure is then
   ``scrubbing``;
5. **scrubs and proves**, outside it: the FTS5 index optimised into one new
   segment (the old segments' pages are freed and, with ``secure_delete``,
   zeroed), the WAL checkpointed and truncated, and the files scanned for
   the subject's bytes as they were written; a VACUUM follows if any remain.
   Only a clean scan makes the erasure ``done``. Traces left make it
   ``incomplete`` (exit 1, the conversations still holding them named, and
   ``vault status`` CRITICAL) until an erasure of the same subject
   completes.

What is not erased: the sealed bundles in the archive (encrypted, the
source of truth, and not editable without breaking their signatures); the
tombstones are what keeps their content from coming back.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from vault import audit, canonical, records, statehook, store, timestamps, tombstones
from vault.erasureplan import Item, Plan, plan
from vault.errors import LegalHoldBlocks, PolicyRefused, UsageError
from vault.storescrub import ErasureIncomplete, byte_scan, holders, others_containing, scrub
from vault.subjects import Subject, VaultHandle

# Item, Plan, plan, scrub, byte_scan and ErasureIncomplete live next door; other
# modules (retention, requests, the CLI, the demo) reach them through this one.
__all__ = ["ErasureIncomplete", "Item", "Plan", "approve", "byte_scan", "check_reason",
           "execute", "four_eyes", "listing", "pending_subject", "plan", "refuse_if_held",
           "request", "scrub"]


# -- requests, approval, execution -----------------------------------------------------

def four_eyes(v: VaultHandle) -> bool:
    """``[erasure] four_eyes`` (type-checked with the config: :mod:`vault.vaultconfig`)."""
    return bool(v.cfg.four_eyes)


def refuse_if_held(v: VaultHandle, p: Plan, reason: str, erasure_id: str | None, *,
                   case_id: str | None = None, listed: bool = False,
                   requested_by: str | None = None) -> None:
    """Exit 4 naming the holds (and log the refusal) when anything in scope is held.

    ``listed`` records a new request as ``refused`` so that ``erase list``
    shows it (without the subject's identifiers: nothing will be erased),
    as requested by ``requested_by`` (default: the operator).
    """
    if not p.held:
        return
    names = p.holds()
    note = f"refused: legal hold {', '.join(names)}"
    with store.transaction(v.conn):
        if erasure_id is None and listed:
            erasure_id = _next_id(v)
            v.conn.execute("INSERT INTO erasures (id, case_id, reason, status, requested_at, "
                           "requested_by, note) VALUES (?, ?, ?, 'refused', ?, ?, ?)",
                           (erasure_id, case_id, reason, timestamps.now_utc(),
                            requested_by or audit.operator(), note))
        elif erasure_id:
            v.conn.execute("UPDATE erasures SET note = ? WHERE id = ?", (note, erasure_id))
        audit.append(v.conn, "erase.refused", target=v.target(p.pairs[:4]), purpose=reason,
                     detail={"erasure": erasure_id, "holds": names,
                             "held_conversations": len(p.held)})
    if erasure_id:
        statehook.changed(v.home, "erasure")
    raise LegalHoldBlocks(f"nothing erased: {len(p.held)} conversation(s) in scope are "
                          f"under legal hold {', '.join(names)}; release the hold "
                          "('chatvault hold release NAME') or narrow the request")


def check_reason(reason: str | None) -> None:
    """A reason is required, and holds no identifier: the audit log keeps it for good."""
    from vault import redaction

    if reason is None or not reason.strip():
        raise UsageError("--reason is required (it goes into the audit log)")
    if any(s.kind in ("email", "phone") for s in redaction.find(reason, None)):
        raise UsageError("--reason holds an e-mail address or phone number: the audit log "
                         "keeps reasons for good and an erasure cannot take them out; "
                         "write a case id or a description instead")


def request(v: VaultHandle, subject: Subject, reason: str,
            case_id: str | None = None, requested_by: str | None = None) -> str:
    """Record an erasure request; returns its id (``E-<n>``).

    ``requested_by`` names who asked when it is not the operator at the vault
    (a signed request from media: ``request:<fingerprint>``).
    """
    check_reason(reason)
    now, who = timestamps.now_utc(), requested_by or audit.operator()
    with store.transaction(v.conn):
        eid = _next_id(v)
        v.conn.execute("INSERT INTO erasures (id, case_id, reason, status, requested_at, "
                       "requested_by) VALUES (?, ?, ?, 'pending', ?, ?)",
                       (eid, case_id, reason, now, who))
        v.conn.executemany("INSERT INTO erasure_subjects (erasure_id, kind, value) "
                           "VALUES (?, ?, ?)", [(eid, k, val) for k, val in
                                                (subject.exact() + subject.digit_pairs())])
        audit.append(v.conn, "erase.request",
                     target=v.target(subject.exact() + subject.digit_pairs()),
                     purpose=reason, detail={"erasure": eid, "case": case_id})
    statehook.changed(v.home, "erasure")
    return eid


def _next_id(v: VaultHandle) -> str:
    n = v.conn.execute("SELECT count(*) FROM erasures").fetchone()[0]
    return f"E-{n + 1:04d}"


def pending_subject(v: VaultHandle, erasure_id: str) -> tuple[Subject, dict[str, Any]]:
    erasure_id = erasure_id.strip().upper()  # 'e-0002' is E-0002
    row = v.conn.execute("SELECT id, status, requested_by, reason, case_id FROM erasures "
                         "WHERE id = ?", (erasure_id,)).fetchone()
    if row is None:
        raise UsageError(f"no erasure request {erasure_id!r} (see 'chatvault erase list')")
    info = dict(zip(("id", "status", "requested_by", "reason", "case_id"), row))
    if info["status"] == "incomplete":
        raise UsageError(f"erasure {erasure_id} was carried out but is incomplete (see "
                         "'chatvault erase list'): run the same 'chatvault erase' again")
    if info["status"] != "pending":
        raise UsageError(f"erasure {erasure_id} is {info['status']}, not pending")
    s = Subject()
    for kind, value in v.conn.execute("SELECT kind, value FROM erasure_subjects WHERE "
                                      "erasure_id = ?", (erasure_id,)):
        s.bucket(kind).append(value)
    return s, info


def approve(v: VaultHandle, erasure_id: str, approver: str | None = None) -> dict[str, Any]:
    """The second pair of eyes: a different operator approves, and it is executed.

    ``approver`` names the second pair of eyes when it is not the operator at
    the vault (a second DPO signature on a request: ``dpo:<fingerprint>``).
    """
    subject, info = pending_subject(v, erasure_id)
    erasure_id = info["id"]
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
    """Erase now (holds checked again), scrub the files, prove it; returns counts.

    The erasure is ``scrubbing`` once the data is gone and ``done`` only when
    the byte scan finds nothing; traces left make it ``incomplete``
    (:class:`ErasureIncomplete`, exit 1) with a note saying what remains.
    """
    p = plan(v, subject)
    refuse_if_held(v, p, reason, erasure_id)
    counts = _apply(v, p, erasure_id, subject, reason)
    # The state file is saved once the erasure's last change is committed,
    # whichever way it ends (saved earlier, 'done' would leave it stale).
    try:
        others = others_containing(v, p)
        try:
            counts["scrub"] = scrub(v.home, v.conn, p.needles, others)
        except ErasureIncomplete as exc:
            counts["scrub"] = {"found": exc.found}
            raise _incomplete(v, erasure_id, counts, exc,
                              holders(v.conn, p.needles)) from None
        with store.transaction(v.conn):
            v.conn.execute("UPDATE erasures SET status = 'done', done_at = ?, counts = ? "
                           "WHERE id = ?", (timestamps.now_utc(),
                                            canonical.dumps(counts).decode(), erasure_id))
            _complete_earlier(v, erasure_id, counts)
    finally:
        statehook.changed(v.home, "tombstones")
    return counts


def _complete_earlier(v: VaultHandle, erasure_id: str, counts: dict[str, Any]) -> None:
    """Earlier runs this clean scan covers are done now (re-evaluated, not left stale).

    An earlier incomplete or interrupted erasure is covered when it was
    about the same subject, or about identifiers all of which this erasure
    erased: the byte scan just found none of them.
    """
    refs = set(counts.get("subject_refs") or ())
    for eid, text in v.conn.execute("SELECT id, counts FROM erasures WHERE id != ? AND "
                                    "status IN ('incomplete', 'scrubbing')",
                                    (erasure_id,)).fetchall():
        earlier = canonical.loads(text) if text else {}
        theirs = set(earlier.get("subject_refs") or ())
        if earlier.get("subject_ref") == counts["subject_ref"] or (theirs and theirs <= refs):
            v.conn.execute("UPDATE erasures SET status = 'done', note = ? WHERE id = ?",
                           (f"completed by {erasure_id}", eid))


def _incomplete(v: VaultHandle, erasure_id: str, counts: dict[str, Any],
                exc: ErasureIncomplete, where: tuple[list[str], list[str]]
                ) -> ErasureIncomplete:
    """Record the erasure as incomplete; the error to raise, saying what to do."""
    convs, places = where
    todo = []
    if convs:
        shown = ", ".join(convs[:5]) + (f" and {len(convs) - 5} more" if len(convs) > 5
                                        else "")
        todo.append(f"conversation(s) {shown} still hold it: review them, then run the "
                    "same 'chatvault erase' again")
    if places:
        todo.append(f"it is written in {', '.join(places)}: text typed into a note or "
                    "reason, which chatvault keeps as written (the audit log is a hash "
                    "chain); tell your DPO")
    if not todo:
        todo.append("stop the daemon (it may hold the store open) and run the same "
                    "'chatvault erase' again")
    note = f"incomplete: {exc.detail}; {'; '.join(todo)}"
    with store.transaction(v.conn):
        v.conn.execute("UPDATE erasures SET status = 'incomplete', counts = ?, note = ? "
                       "WHERE id = ?", (canonical.dumps(counts).decode(), note, erasure_id))
        audit.append(v.conn, "erase.incomplete", target=f"erasure:{erasure_id}",
                     detail={"erasure": erasure_id, "traces": exc.found,
                             "conversations": len(convs), "places": len(places)})
    out = ErasureIncomplete(f"erasure {erasure_id} is INCOMPLETE, not done: {exc.detail}; "
                            f"{'; '.join(todo)}. Until an erasure of this subject completes, "
                            "do not hand on the store or its backups ('chatvault erase list' "
                            "shows it)")
    out.found = exc.found
    return out


def _subject_ref(v: VaultHandle, subject: Subject) -> str:
    """A keyed hash naming the subject, so a later run can finish an incomplete one."""
    text = "\n".join(sorted(f"{k}:{val}" for k, val in subject.exact()
                               + subject.digit_pairs()))
    return v.key.hash(tombstones.PURPOSE_AUDIT, "subject", text)[:32]


def _identifier_refs(v: VaultHandle, pairs: list[tuple[str, str]]) -> list[str]:
    """A keyed hash per identifier: which earlier erasures a later clean scan covers."""
    return sorted({v.key.hash(tombstones.PURPOSE_AUDIT, k, val)[:32] for k, val in pairs})


def _settle_pending(v: VaultHandle, erasure_id: str, pairs: list[tuple[str, str]]
                    ) -> list[str]:
    """Other pending requests lose the identifiers erased here; emptied ones are done.

    A pending request keeps its subject's identifiers in ``erasure_subjects``
    until it runs; once they are erased (and tombstoned) here, keeping them
    there would only be a trace of the subject, which the byte scan counts.
    """
    settled, wanted = [], set(pairs)
    for (eid,) in v.conn.execute("SELECT id FROM erasures WHERE id != ? AND status = "
                                 "'pending' ORDER BY id", (erasure_id,)).fetchall():
        rows = v.conn.execute("SELECT rowid, kind, value FROM erasure_subjects WHERE "
                              "erasure_id = ?", (eid,)).fetchall()
        gone = [rowid for rowid, kind, value in rows if (kind, value) in wanted]
        if not gone:
            continue
        v.conn.executemany("DELETE FROM erasure_subjects WHERE rowid = ?",
                           [(r,) for r in gone])
        if len(gone) == len(rows):
            v.conn.execute("UPDATE erasures SET status = 'done', done_at = ?, note = ? "
                           "WHERE id = ?", (timestamps.now_utc(),
                                            f"settled by {erasure_id}: the same subject "
                                            "was erased there", eid))
        else:
            v.conn.execute("UPDATE erasures SET note = ? WHERE id = ?",
                           (f"partly settled by {erasure_id}: {len(gone)} of its "
                            "identifier(s) were erased there", eid))
        settled.append(eid)
    return settled


def _apply(v: VaultHandle, p: Plan, erasure_id: str, subject: Subject,
           reason: str) -> dict[str, Any]:
    from vault.upsert import Loader

    conn, now = v.conn, timestamps.now_utc()
    with store.transaction(conn):
        added = sum(tombstones.add(conn, v.key, k, val, origin=erasure_id)
                    for k, val in p.pairs)
        added += sum(tombstones.add(conn, v.key, "conversation", val, origin=erasure_id)
                     for val in p.whole)
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
                            retention_days=v.cfg.retention_for(item.source), merge=False)
            data, summary = records.canonical_record(item.redacted, item.conversation_id)
            loader.add(item.redacted, data, summary.last_at)
            loader.flush()
        gone = _drop_blobs(conn, v.key, blobs, erasure_id)
        _scrub_cases(v, p.pairs)
        conn.execute("DELETE FROM erasure_subjects WHERE erasure_id = ?", (erasure_id,))
        settled = _settle_pending(v, erasure_id, [*p.pairs, *subject.exact()])
        counts = {"conversations_removed": len(p.dropped),
                  "conversations_redacted": len(p.redacted), "attachments_removed": gone,
                  "tombstones_added": added, "removed_whole": len(p.whole),
                  "subject_ref": _subject_ref(v, subject),
                  "subject_refs": _identifier_refs(v, [*p.pairs, *subject.exact()]),
                  "settled": settled}
        # Not 'done' yet: that waits for the byte scan (execute).
        conn.execute("UPDATE erasures SET status = 'scrubbing', counts = ? WHERE id = ?",
                     (canonical.dumps(counts).decode(), erasure_id))
        audit.append(conn, "erase", target=v.target(subject.exact()), purpose=reason,
                     detail={"erasure": erasure_id, "settled": settled,
                             **{k: n for k, n in counts.items() if isinstance(n, int)}})
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
