"""Step 1: the vault store as first shipped.

Tables (``conv`` is a conversation's rowid, ``msg`` a message's rowid)::

    settings          key -> value (identifier-key check value, store id)
    sources           one row per source name seen in a verified bundle
    bundles           every bundle ingested: chain position, hash, signer,
                      header counts, what was taken in, media, times
    quarantine        every bundle refused: file, hash, code, reason, where
                      it was kept; resolved_at once a good copy arrived
    conversations     one row per (source, conversation_id): the canonical
                      JSON as received (``record``) plus the columns queries
                      need, which bundle supplied this version, retention
    participants      per conversation, normalised e-mail and phone
    messages          per conversation, original text in order
    messages_fts      FTS5 over folded message text (``body``) and the
                      normalised phone numbers found in it (``ids``);
                      rowid = messages.id
    identifiers       (kind, value) -> conversation: e-mail, phone (E.164),
                      phone_unparsed, platform_id, customer_id, name
    mentions          (kind, value) -> conversation and message: e-mail
                      addresses and phone numbers written in message text
    attachments       content-addressed (SHA-256), stored once, as zstd
                      chunks in attachment_chunks
    attachment_refs   which message refers to which attachment
    tombstones        keyed hashes of erased identifiers (vault.tombstones)
    legal_holds       placeholder shape; the GDPR operations extend it
    audit_log         the hash chain (vault.audit)

Deleting a conversation cascades to its participants, messages,
identifiers, mentions and attachment references; ``messages_fts`` is a
virtual table and must be cleaned explicitly (``store.delete_conversation``).
"""

from __future__ import annotations

from typing import Any

import sqlite_utils
from sqlite_utils.db import ForeignKey


def _table(db: sqlite_utils.Database, name: str, columns: dict[str, Any], *,
           pk: str | None = "id", not_null: tuple[str, ...] = (),
           refs: tuple[tuple[str, str, str], ...] = ()) -> None:
    """A table; ``refs`` are (column, parent table, on delete) to the parent's id."""
    fks = [ForeignKey(name, col, parent, "name" if parent == "sources" else "id",
                      on_delete=action) for col, parent, action in refs]
    db.create_table(name, columns, pk=pk, not_null=list(not_null), foreign_keys=fks)


def _index(db: sqlite_utils.Database, table: str, columns: list[str],
           unique: bool = False) -> None:
    db.table(table).create_index(columns, unique=unique)


def apply(db: sqlite_utils.Database) -> None:
    _table(db, "settings", {"key": str, "value": str}, pk="key", not_null=("value",))
    _table(db, "sources", {"name": str, "first_seen_at": str, "last_signer": str},
           pk="name", not_null=("first_seen_at",))

    _table(db, "bundles", {
        "id": int, "source": str, "sequence": int, "sha256": str, "bundle_id": str,
        "prev_hash": str, "signer": str, "signer_name": str, "file": str,
        "archive_path": str, "size": int, "created_at": str, "window_first": str,
        "window_last": str, "header_counts": str, "counts": str, "note": str,
        "media_label": str, "media_serial": str, "received_at": str, "ingested_at": str,
    }, not_null=("source", "sequence", "sha256", "signer", "file", "size", "created_at",
                 "received_at", "ingested_at"),
        refs=(("source", "sources", "RESTRICT"),))
    _index(db, "bundles", ["source", "sequence"], unique=True)
    _index(db, "bundles", ["sha256"], unique=True)

    _table(db, "quarantine", {
        "id": int, "file": str, "sha256": str, "code": str, "reason": str, "source": str,
        "sequence": int, "signer": str, "created_at": str, "path": str,
        "media_label": str, "media_serial": str, "at": str, "last_seen_at": str,
        "resolved_at": str, "resolution": str,
    }, not_null=("file", "sha256", "code", "reason", "path", "at", "last_seen_at"))
    _index(db, "quarantine", ["sha256"], unique=True)

    _table(db, "conversations", {
        "id": int, "source": str, "conversation_id": str, "platform": str,
        "started_at": str, "ended_at": str, "last_at": str, "status": str, "channel": str,
        "title": str, "customer_id": str, "message_count": int, "participant_count": int,
        "content_sha256": str, "record": str, "bundle": int, "bundle_sequence": int,
        "retention_until": str, "first_ingested_at": str, "ingested_at": str,
    }, not_null=("source", "conversation_id", "started_at", "content_sha256", "record",
                 "bundle", "bundle_sequence", "first_ingested_at", "ingested_at"),
        refs=(("source", "sources", "RESTRICT"), ("bundle", "bundles", "RESTRICT")))
    _index(db, "conversations", ["source", "conversation_id"], unique=True)
    _index(db, "conversations", ["bundle"])
    _index(db, "conversations", ["retention_until"])

    _table(db, "participants", {
        "conversation": int, "participant_id": str, "role": str, "name": str,
        "email": str, "phone": str, "customer_id": str,
    }, pk=None, not_null=("conversation", "participant_id", "role"),
        refs=(("conversation", "conversations", "CASCADE"),))
    _index(db, "participants", ["conversation"])

    _table(db, "messages", {
        "id": int, "conversation": int, "position": int, "message_id": str, "at": str,
        "sender": str, "text": str, "direction": str, "visibility": str,
        "content_type": str,
    }, not_null=("conversation", "position", "message_id", "at", "text"),
        refs=(("conversation", "conversations", "CASCADE"),))
    _index(db, "messages", ["conversation", "position"])

    db.execute("CREATE VIRTUAL TABLE messages_fts USING fts5("
               "body, ids, tokenize = 'unicode61 remove_diacritics 0')")

    _table(db, "identifiers", {
        "conversation": int, "kind": str, "value": str, "participant_id": str,
    }, pk=None, not_null=("conversation", "kind", "value"),
        refs=(("conversation", "conversations", "CASCADE"),))
    _index(db, "identifiers", ["kind", "value", "conversation"])
    _index(db, "identifiers", ["conversation"])

    _table(db, "mentions", {
        "conversation": int, "message": int, "kind": str, "value": str,
    }, pk=None, not_null=("conversation", "message", "kind", "value"),
        refs=(("conversation", "conversations", "CASCADE"),
              ("message", "messages", "CASCADE")))
    _index(db, "mentions", ["kind", "value", "conversation"])
    _index(db, "mentions", ["conversation"])
    _index(db, "mentions", ["message"])

    _table(db, "attachments", {
        "sha256": str, "size": int, "chunks": int, "stored_bytes": int,
        "first_seen_at": str,
    }, pk="sha256", not_null=("size", "chunks", "stored_bytes", "first_seen_at"))
    _table(db, "attachment_chunks", {"sha256": str, "idx": int, "data": bytes},
           pk=None, not_null=("sha256", "idx", "data"))
    db.execute("CREATE UNIQUE INDEX idx_attachment_chunks ON attachment_chunks (sha256, idx)")
    _table(db, "attachment_refs", {
        "conversation": int, "message": int, "sha256": str, "name": str, "type": str,
        "size": int,
    }, pk=None, not_null=("conversation", "message", "sha256"),
        refs=(("conversation", "conversations", "CASCADE"),
              ("message", "messages", "CASCADE")))
    _index(db, "attachment_refs", ["sha256"])
    _index(db, "attachment_refs", ["conversation"])
    _index(db, "attachment_refs", ["message"])

    _table(db, "tombstones", {
        "id": int, "kind": str, "hash": str, "created_at": str, "origin": str,
    }, not_null=("kind", "hash", "created_at"))
    _index(db, "tombstones", ["kind", "hash"], unique=True)

    _table(db, "legal_holds", {
        "id": int, "name": str, "scope": str, "reason": str, "created_at": str,
        "created_by": str, "released_at": str,
    }, not_null=("name", "scope", "created_at"))

    # AUTOINCREMENT: sqlite_sequence remembers the highest number ever given,
    # so removing the newest entry is detectable (vault.audit.verify).
    db.execute("""CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        purpose TEXT,
        detail TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""")
