"""The shape of the exporter's memory (``H/state/export.db``): tables and rows.

What it remembers, and why:

``sources``        per source, the last sequence number and the SHA-256 of the
                   last bundle: the chain the next bundle continues.
``conversations``  per source and conversation id, the content hash last
                   sealed: a conversation is sealed again only when it changed.
``bundles``        every bundle sealed: file name, sequence, SHA-256, size,
                   counts, the recipient vaults it was sealed to, when it was
                   written to media, acknowledged, and deleted locally.
``acks``           per bundle and vault, the latest receipt's status
                   (ingested, duplicate or quarantined), reason, and the hash
                   of the copy the vault read when it was not ours.
``strays``         quarantine reports about damaged stray copies of a bundle
                   the vault already holds (kept apart: they must never
                   replace its acknowledgement), and when we removed the
                   damaged copy from a stick.
``resolutions``    quarantine reports settled by a person (``export
                   resolve``) or by sealing the conversations again
                   (``export reseal``), one per report (bundle, vault, time).
``runs``, ``source_runs``  run history: when, and how each source fared.
``audit_seen``     per vault, the audit log positions (chain, entries, head)
                   its verified receipts stated, with the receipt's time and
                   file name: what :func:`vault.auditwatch.audit_findings` judges.
``audit_resolutions``  audit findings a person checked and dismissed
                   (``export resolve audit-...``), with a note.

Schema changes are numbered steps in ``MIGRATIONS`` (``PRAGMA user_version``
counts those applied); never edit a released step, add one. How the
database is used is in :mod:`vault.exportstate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MIGRATIONS = [
    """
    CREATE TABLE sources (
        name TEXT PRIMARY KEY,
        last_sequence INTEGER NOT NULL DEFAULT 0,
        last_hash TEXT
    );
    CREATE TABLE conversations (
        source TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (source, conversation_id)
    ) WITHOUT ROWID;
    CREATE TABLE bundles (
        source TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        file_name TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        plaintext_size INTEGER NOT NULL,
        conversations INTEGER NOT NULL,
        messages INTEGER NOT NULL,
        recipients TEXT NOT NULL,
        created_at TEXT NOT NULL,
        media_written_at TEXT,
        acknowledged_at TEXT,
        local_deleted_at TEXT,
        PRIMARY KEY (source, sequence)
    );
    CREATE TABLE acks (
        sha256 TEXT NOT NULL,
        vault TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        receipt_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (sha256, vault)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        exit_code INTEGER,
        summary TEXT
    );
    CREATE TABLE source_runs (
        run_id INTEGER NOT NULL,
        source TEXT NOT NULL,
        at TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        message TEXT,
        conversations INTEGER NOT NULL,
        messages INTEGER NOT NULL,
        bundles INTEGER NOT NULL,
        PRIMARY KEY (run_id, source)
    );
    """,
    """
    ALTER TABLE acks ADD COLUMN copy_sha256 TEXT;
    ALTER TABLE bundles ADD COLUMN abandoned_at TEXT;
    CREATE TABLE strays (
        sha256 TEXT NOT NULL,
        vault TEXT NOT NULL,
        copy_sha256 TEXT NOT NULL,
        reason TEXT,
        receipt_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        removed_at TEXT,
        PRIMARY KEY (sha256, vault, copy_sha256)
    );
    CREATE TABLE resolutions (
        sha256 TEXT NOT NULL,
        vault TEXT NOT NULL,
        receipt_at TEXT NOT NULL,
        resolved_at TEXT NOT NULL,
        how TEXT NOT NULL,
        note TEXT,
        PRIMARY KEY (sha256, vault, receipt_at)
    );
    """,
    """
    CREATE TABLE audit_seen (
        vault TEXT NOT NULL,
        chain TEXT NOT NULL,
        entries INTEGER NOT NULL,
        head TEXT NOT NULL,
        receipt_at TEXT NOT NULL,
        receipt TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (vault, chain, entries, head, receipt_at)
    ) WITHOUT ROWID;
    CREATE TABLE audit_resolutions (
        vault TEXT NOT NULL,
        kind TEXT NOT NULL,
        chain TEXT NOT NULL,
        earlier_at TEXT NOT NULL,
        later_at TEXT NOT NULL,
        finding TEXT NOT NULL,
        resolved_at TEXT NOT NULL,
        operator TEXT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (vault, kind, chain, earlier_at, later_at)
    );
    """,
]


@dataclass(frozen=True)
class BundleRow:
    source: str
    sequence: int
    file_name: str
    sha256: str
    size: int
    plaintext_size: int
    conversations: int
    messages: int
    recipients: tuple[str, ...]
    created_at: str
    media_written_at: str | None = None
    acknowledged_at: str | None = None
    local_deleted_at: str | None = None
    abandoned_at: str | None = None  # given up on by 'export reseal'

    def describe(self) -> dict[str, Any]:
        return {"file": self.file_name, "source": self.source, "sequence": self.sequence,
                "sha256": self.sha256, "size": self.size,
                "conversations": self.conversations, "messages": self.messages,
                "created_at": self.created_at, "media_written_at": self.media_written_at,
                "acknowledged_at": self.acknowledged_at, "abandoned_at": self.abandoned_at}


@dataclass(frozen=True)
class Ack:
    sha256: str
    vault: str
    status: str
    reason: str | None
    receipt_at: str
    received_at: str
    copy_sha256: str | None = None  # what the vault read, when it differs from ours


@dataclass(frozen=True)
class Stray:
    sha256: str
    vault: str
    copy_sha256: str
    reason: str | None
    receipt_at: str
    received_at: str
    removed_at: str | None


_BUNDLE_COLS = ("source, sequence, file_name, sha256, size, plaintext_size, conversations, "
                "messages, recipients, created_at, media_written_at, acknowledged_at, "
                "local_deleted_at, abandoned_at")


def _bundle(row: tuple[Any, ...]) -> BundleRow:
    values = list(row)
    values[8] = tuple(json.loads(values[8]))
    return BundleRow(*values)


BUNDLE_COLS = ("source, sequence, file_name, sha256, size, plaintext_size, conversations, "
               "messages, recipients, created_at, media_written_at, acknowledged_at, "
               "local_deleted_at, abandoned_at")


def bundle_row(row: tuple[Any, ...]) -> BundleRow:
    """A ``bundles`` row, selected with :data:`BUNDLE_COLS`, as a :class:`BundleRow`."""
    values = list(row)
    values[8] = tuple(json.loads(values[8]))
    return BundleRow(*values)
