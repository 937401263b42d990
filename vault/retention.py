"""Retention (GDPR Art. 5(1)(e)): nothing kept longer than its source's period.

Each conversation's expiry (``retention_until``) is stamped at ingest from
``[sources."<name>"] retention_days`` (else ``[defaults] retention_days``;
0 = no limit), counted from its last activity. ``retention_policies``
remembers the days each source's stamps were computed with: when the
config changes, :func:`apply` re-stamps that source first, so a shorter
period takes effect on what is already stored and a longer one protects it.

:func:`apply` then removes every expired conversation that no legal hold
covers, with the same secure deletion as erasure (attachments nobody else
refers to, FTS5 optimised, WAL truncated), and reports counts per source.

A purge sticks: each purged conversation gets a marker (:mod:`vault.purges`:
a keyed hash of source and conversation id, with the last activity it was
judged by), so a replayed or re-exported bundle, or a rebuild from the
archive, leaves it out instead of storing it again, and a legal hold placed
after the purge cannot keep a copy that came back. Only a version with later
activity (the conversation resumed) is stored again. The sealed bundles in
``H/archive/`` still hold what was purged, encrypted, as they hold erased
data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from vault import audit, canonical, purges, statehook, store, timestamps
from vault.subjects import VaultHandle

_BATCH = 500


def _restamp(v: VaultHandle, now: str, dry_run: bool) -> dict[str, int]:
    """Bring every source's stamps in line with the configured days; counts per source."""
    out: dict[str, int] = {}
    known = dict(v.conn.execute("SELECT source, days FROM retention_policies"))
    for (src,) in v.conn.execute("SELECT DISTINCT source FROM conversations").fetchall():
        days = v.cfg.retention_for(src)
        if known.get(src) == days:
            continue
        changed = 0
        rows = v.conn.execute("SELECT id, coalesce(last_at, started_at), retention_until "
                              "FROM conversations WHERE source = ?", (src,)).fetchall()
        updates = []
        for conv, last, old in rows:
            new = (timestamps.format_utc(timestamps.parse(last) + timedelta(days=days))
                   if days else None)
            if new != old:
                updates.append((new, conv))
        changed = len(updates)
        if not dry_run:
            v.conn.executemany("UPDATE conversations SET retention_until = ? WHERE id = ?",
                               updates)
            v.conn.execute("INSERT INTO retention_policies (source, days, stamped_at) "
                           "VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
                           "days = excluded.days, stamped_at = excluded.stamped_at",
                           (src, days, now))
        out[src] = changed
    return out


def expired(v: VaultHandle, now: str) -> list[tuple[int, str, int]]:
    """(conversation rowid, source, messages) of everything past its expiry."""
    return v.conn.execute("SELECT id, source, message_count FROM conversations WHERE "
                          "retention_until IS NOT NULL AND retention_until < ? "
                          "ORDER BY source, retention_until", (now,)).fetchall()


def apply(v: VaultHandle, *, dry_run: bool = False,
          now: datetime | None = None) -> dict[str, Any]:
    """Purge expired, unheld conversations; returns per-source counts and totals."""
    from vault import erasure, holds

    moment = timestamps.format_utc(now or datetime.now(timestamps.UTC))
    with store.transaction(v.conn):
        restamped = _restamp(v, moment, dry_run)
        due = expired(v, moment)
        if dry_run and restamped:
            due = _expired_as_if(v, moment)
        held = holds.covering(v.conn, v.key, [c for c, _, _ in due])
        per: dict[str, dict[str, Any]] = {}
        blobs: set[str] = set()
        for conv, src, msgs in due:
            item = per.setdefault(src, {"expired": 0, "purged": 0, "messages": 0,
                                        "held": 0, "holds": []})
            item["expired"] += 1
            if conv in held:
                item["held"] += 1
                item["holds"] = sorted(set(item["holds"]) | set(held[conv]))
                continue
            item["purged"] += 1
            item["messages"] += msgs
            if not dry_run:
                blobs.update(sha for (sha,) in v.conn.execute(
                    "SELECT sha256 FROM attachment_refs WHERE conversation = ?", (conv,)))
                _mark(v, conv, moment)
                store.delete_conversation(v.conn, conv)
        gone = 0 if dry_run else _drop_blobs(v, blobs)
        totals = {k: sum(p[k] for p in per.values()) for k in ("expired", "purged",
                                                               "messages", "held")}
        totals["attachments"] = gone
        report = {"at": moment, "dry_run": dry_run, "sources": per, "totals": totals,
                  "restamped": restamped}
        if not dry_run:
            v.conn.execute("INSERT INTO retention_runs (at, operator, dry_run, counts) "
                           "VALUES (?, ?, 0, ?)", (moment, audit.operator(),
                                                   canonical.dumps(report).decode()))
            audit.append(v.conn, "retention.purge", target="retention",
                         purpose="retention period over (Art. 5(1)(e))",
                         detail={"totals": totals, "marked": totals["purged"],
                                 "sources": {s: p["purged"] for s, p in per.items()}})
    if not dry_run:
        if restamped or totals["purged"]:
            statehook.changed(v.home, "retention")
        if totals["purged"]:
            report["scrub"] = erasure.scrub(v.home, v.conn)
    return report


def _mark(v: VaultHandle, conv: int, now: str) -> None:
    """The purge marker of one conversation, by the last activity retention judged."""
    src, cid, last = v.conn.execute(
        "SELECT source, conversation_id, coalesce(last_at, started_at) FROM conversations "
        "WHERE id = ?", (conv,)).fetchone()
    purges.mark(v.conn, v.key, src, cid, last, now)


def _expired_as_if(v: VaultHandle, now: str) -> list[tuple[int, str, int]]:
    """For a dry run with a changed policy: what the new stamps would make expired."""
    out = []
    for conv, src, msgs, last in v.conn.execute(
            "SELECT id, source, message_count, coalesce(last_at, started_at) "
            "FROM conversations ORDER BY source"):
        days = v.cfg.retention_for(src)
        if days and timestamps.format_utc(timestamps.parse(last) + timedelta(days=days)) < now:
            out.append((conv, src, msgs))
    return out


def _drop_blobs(v: VaultHandle, blobs: set[str]) -> int:
    gone = 0
    for sha in sorted(blobs):
        if v.conn.execute("SELECT 1 FROM attachment_refs WHERE sha256 = ? LIMIT 1",
                          (sha,)).fetchone():
            continue
        v.conn.execute("DELETE FROM attachment_chunks WHERE sha256 = ?", (sha,))
        gone += v.conn.execute("DELETE FROM attachments WHERE sha256 = ?", (sha,)).rowcount
    return gone


def last_run(conn: Any) -> dict[str, Any] | None:
    row = conn.execute("SELECT at, counts FROM retention_runs ORDER BY id DESC LIMIT 1"
                       ).fetchone()
    return {"at": row[0], **canonical.loads(row[1])} if row else None
