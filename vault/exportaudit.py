"""The vaults' audit-log positions as their receipts stated them, and findings dismissed.

Kept in the ``audit_seen`` and ``audit_resolutions`` tables of the export
state (:mod:`vault.exportschema`); :mod:`vault.acks` records each position a
verified receipt states, :mod:`vault.auditwatch` judges them (a log cut or
rewritten) and ``export resolve audit-...`` dismisses a finding. A mixin of
:class:`vault.exportstate.ExportState`, which provides the connection and
transactions.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from vault import timestamps


class AuditPositions:
    """Methods over ``audit_seen`` and ``audit_resolutions``; needs ``db`` and ``transaction``."""

    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_audit(self, vault: str, chain: str, entries: int, head: str,
                     receipt_at: str, receipt: str) -> bool:
        """Keep one position a verified receipt stated; False when known (a replay)."""
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO audit_seen VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (vault, chain, entries, head, receipt_at, receipt,
                              timestamps.now_utc()))
            return cur.rowcount == 1

    def audit_seen(self) -> list[tuple[str, str, int, str, str, str]]:
        """(vault, chain, entries, head, receipt_at, receipt file) of every position kept."""
        rows = self.db.execute("SELECT vault, chain, entries, head, receipt_at, receipt "
                               "FROM audit_seen ORDER BY vault, chain, entries")
        return [(str(v), str(c), int(n), str(h), str(at), str(f)) for v, c, n, h, at, f in rows]

    def resolve_audit(self, vault: str, kind: str, chain: str, earlier_at: str,
                      later_at: str, finding: str, operator: str, note: str) -> None:
        """Record that a person checked one audit finding and dismissed it."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO audit_resolutions VALUES (?,?,?,?,?,?,?,?,?)",
                       (vault, kind, chain, earlier_at, later_at, finding,
                        timestamps.now_utc(), operator, note))

    def audit_resolutions(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM audit_resolutions ORDER BY resolved_at")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]
