"""Step 2: the GDPR operations' tables.

::

    dsar_cases         one access request: id (DSAR-YYYY-NNNN), received and due
                       dates, extension, status, who opened and closed it
    dsar_subjects      the identifiers a case is about (kind, normalised value);
                       an erasure replaces ``value`` by its keyed hash (``erased``)
    erasures           erasure requests: who asked, why, who approved (four
                       eyes), status, counts; the identifiers they name are kept
                       only until the erasure is done, then scrubbed
    erasure_subjects   the identifiers of a pending erasure
    restrictions       Art. 18 restrictions: keyed hashes of identifiers
    legal_holds        (from step 1) gains ``released_by`` and ``release_reason``
    retention_policies the retention days per source that the stored expiry
                       dates were computed with, so a changed policy is noticed
    retention_runs     every ``retention apply``: when, who, counts

Identifiers in restrictions and subject holds are keyed hashes
(:mod:`vault.tombstones`), never the identifiers themselves.
"""

from __future__ import annotations

import sqlite_utils


def apply(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE dsar_cases (
        id TEXT PRIMARY KEY,
        received TEXT NOT NULL,
        due TEXT NOT NULL,
        extended_due TEXT,
        extension_reason TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        note TEXT,
        opened_at TEXT NOT NULL,
        opened_by TEXT NOT NULL,
        closed_at TEXT,
        closed_by TEXT,
        close_note TEXT,
        exported_at TEXT
    )""")
    db.execute("CREATE INDEX idx_dsar_cases_status ON dsar_cases (status, due)")
    db.execute("""CREATE TABLE dsar_subjects (
        case_id TEXT NOT NULL REFERENCES dsar_cases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        erased INTEGER NOT NULL DEFAULT 0
    )""")
    db.execute("CREATE INDEX idx_dsar_subjects_case ON dsar_subjects (case_id)")
    db.execute("CREATE INDEX idx_dsar_subjects_value ON dsar_subjects (kind, value)")

    db.execute("""CREATE TABLE erasures (
        id TEXT PRIMARY KEY,
        case_id TEXT,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        approved_at TEXT,
        approved_by TEXT,
        done_at TEXT,
        counts TEXT,
        note TEXT
    )""")
    db.execute("CREATE INDEX idx_erasures_status ON erasures (status)")
    db.execute("""CREATE TABLE erasure_subjects (
        erasure_id TEXT NOT NULL REFERENCES erasures(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        value TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX idx_erasure_subjects ON erasure_subjects (erasure_id)")

    db.execute("""CREATE TABLE restrictions (
        id INTEGER PRIMARY KEY,
        ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        hash TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        lifted_at TEXT,
        lifted_by TEXT
    )""")
    db.execute("CREATE INDEX idx_restrictions_hash ON restrictions (kind, hash)")

    db.execute("ALTER TABLE legal_holds ADD COLUMN released_by TEXT")
    db.execute("ALTER TABLE legal_holds ADD COLUMN release_reason TEXT")
    db.execute("CREATE INDEX idx_legal_holds_name ON legal_holds (name)")

    db.execute("""CREATE TABLE retention_policies (
        source TEXT PRIMARY KEY,
        days INTEGER NOT NULL,
        stamped_at TEXT NOT NULL
    )""")
    db.execute("""CREATE TABLE retention_runs (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        operator TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        counts TEXT NOT NULL
    )""")
