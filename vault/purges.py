"""Retention purge markers: what retention purged stays purged.

The sealed bundles in ``H/archive/`` keep every conversation retention
removed from the store. So that a rebuild from that archive, or a bundle
carrying the same conversation again (a replay, a re-export), does not
store it again, :func:`vault.retention.apply` records a marker for each
conversation it purges: a keyed hash of ``<source>/<conversation_id>``
(the identifier key, a purpose of its own, :mod:`vault.identifierkey`;
never the id itself) and the conversation's last activity, the time
retention judged it by.

Ingest asks :class:`Marks` about each conversation before storing it:

* a record whose last activity is **not later** than the marker's is the
  purged conversation again: it is left out and counted (``purged``);
* a record with **later** activity is the conversation resumed after the
  purge: it is stored as any other and gets a new expiry; purged again, its
  marker moves up to the new last activity.

A legal hold does not bring a purged conversation back: holds keep what is
stored, and a hold placed after a purge covers only what the store still
holds. The markers are state the archive cannot give back: the state file
carries them (:mod:`vault.statefile`) and a rebuild restores them before it
re-ingests the archive, as it does tombstones, so a rebuilt store holds the
same conversations (and the same ``vault digest``) as the live one.
"""

from __future__ import annotations

import sqlite3

from vault import timestamps
from vault.identifierkey import PURPOSE_RETENTION, IdentifierKey

#: the kind hashed with the value: one purged conversation
KIND = "conversation"


def marker_hash(key: IdentifierKey, source: str, conversation_id: str) -> str:
    """The keyed hash a purged conversation is marked by."""
    return key.hash(PURPOSE_RETENTION, KIND, f"{source}/{conversation_id}")


def _later(a: str, b: str) -> bool:
    """Is time ``a`` later than time ``b``? (Compared as times, not as text.)"""
    return timestamps.parse(a) > timestamps.parse(b)


def mark(conn: sqlite3.Connection, key: IdentifierKey, source: str, conversation_id: str,
         last_at: str, now: str) -> None:
    """Record that a conversation with this last activity was purged at ``now``.

    Runs in the purge's transaction. A marker already there (the
    conversation resumed, then expired again) moves up to ``last_at``.
    """
    digest = marker_hash(key, source, conversation_id)
    last = timestamps.format_utc(timestamps.parse(last_at))
    row = conn.execute("SELECT last_at FROM retention_purges WHERE hash = ?",
                       (digest,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO retention_purges (hash, last_at, purged_at) "
                     "VALUES (?, ?, ?)", (digest, last, now))
    elif _later(last, row[0]):
        conn.execute("UPDATE retention_purges SET last_at = ?, purged_at = ? WHERE hash = ?",
                     (last, now, digest))


class Marks:
    """The purge markers, asked about one source's conversations at ingest.

    False (and never called) when the store holds no marker: ingest then
    pays nothing per conversation. Otherwise one indexed lookup per
    conversation to be stored; markers are not loaded into memory, as a
    vault may purge millions over the years.
    """

    def __init__(self, conn: sqlite3.Connection, key: IdentifierKey, source: str) -> None:
        self.conn, self.key, self.source = conn, key, source
        self.any = conn.execute("SELECT 1 FROM retention_purges LIMIT 1").fetchone() is not None

    def __bool__(self) -> bool:
        return self.any

    def __call__(self, conversation_id: str, last_at: str | None) -> bool:
        """True when this version of the conversation is one retention purged."""
        row = self.conn.execute("SELECT last_at FROM retention_purges WHERE hash = ?",
                                (marker_hash(self.key, self.source, conversation_id),)
                                ).fetchone()
        if row is None:
            return False
        return last_at is None or not _later(last_at, row[0])
