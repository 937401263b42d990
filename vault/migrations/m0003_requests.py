"""Step 3: requests carried to the vault on media (:mod:`vault.requestrun`).

::

    requests   one row per request the vault accepted for work (signature,
               trust and role checked): its id and the digest of its body,
               who made it, what became of it (``working`` while it runs,
               ``pending`` while an erasure waits for a second pair of eyes,
               then ``done``, ``refused`` or ``failed``), the DSAR case,
               erasure or restore set it led to, and the signed answer the
               vault gave. A request id seen here again is a replay.

Requests refused before their signer was known to be trusted are not
recorded here (their ids are anyone's to choose); the audit log has them.
"""

from __future__ import annotations

import sqlite_utils


def apply(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        requester TEXT NOT NULL,
        digest TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        received_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        answered_at TEXT,
        case_id TEXT,
        erasure_id TEXT,
        restore_id TEXT,
        answer TEXT
    )""")
    db.execute("CREATE INDEX idx_requests_status ON requests (status)")
