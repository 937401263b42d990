"""Step 4: retention purge markers (:mod:`vault.purges`).

::

    retention_purges   one row per conversation retention purged: a keyed hash
                       of ``<source>/<conversation_id>`` (never the id), the
                       last activity retention judged it by (canonical UTC),
                       and when it was purged. Ingest leaves out a record of a
                       marked conversation whose activity is not later, so a
                       replayed bundle or a rebuild does not bring it back.

The table is state the archive cannot give back: the state file carries it
(:mod:`vault.statefile` finds it by exclusion) and a rebuild restores it
before it ingests, as it does tombstones.
"""

from __future__ import annotations

import sqlite_utils


def apply(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE retention_purges (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        last_at TEXT NOT NULL,
        purged_at TEXT NOT NULL
    )""")
    db.execute("CREATE UNIQUE INDEX idx_retention_purges_hash ON retention_purges (hash)")
