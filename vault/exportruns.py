"""Run history of the exporter: when each command ran and how each source fared.

Kept in the ``runs`` and ``source_runs`` tables of the export state
(:mod:`vault.exportschema`); ``export status`` reads it to say when a source
last ran and last succeeded. A mixin of :class:`vault.exportstate.ExportState`,
which provides the connection and transactions.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from vault import timestamps


class RunHistory:
    """Methods over ``runs`` and ``source_runs``; needs ``db`` and ``transaction``."""

    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError


    def start_run(self, command: str) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (command, started_at) VALUES (?, ?)",
                             (command, timestamps.now_utc()))
            return int(cur.lastrowid or 0)

    def record_source_run(self, run_id: int, source: str, exit_code: int, message: str | None,
                          conversations: int, messages: int, bundles: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO source_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, source, timestamps.now_utc(), exit_code, message,
                        conversations, messages, bundles))

    def finish_run(self, run_id: int, exit_code: int, summary: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? "
                       "WHERE id = ?", (timestamps.now_utc(), exit_code,
                                        json.dumps(summary, sort_keys=True), run_id))

    def last_run(self, command: str = "run") -> dict[str, Any] | None:
        row = self.db.execute("SELECT id, started_at, finished_at, exit_code, summary FROM "
                              "runs WHERE command = ? ORDER BY id DESC LIMIT 1",
                              (command,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "started_at": row[1], "finished_at": row[2],
                "exit_code": row[3], "summary": _summary(row[4])}

    def source_history(self, source: str) -> dict[str, Any]:
        """The last run of ``source`` and its last successful one."""
        cols = "at, exit_code, message, conversations, messages, bundles"
        last = self.db.execute(f"SELECT {cols} FROM source_runs WHERE source = ? "
                               "ORDER BY run_id DESC LIMIT 1", (source,)).fetchone()
        ok = self.db.execute("SELECT at FROM source_runs WHERE source = ? AND exit_code = 0 "
                             "ORDER BY run_id DESC LIMIT 1", (source,)).fetchone()
        out: dict[str, Any] = {"last_run_at": None, "last_exit_code": None,
                               "last_message": None, "last_success_at": ok[0] if ok else None}
        if last:
            out.update(last_run_at=last[0], last_exit_code=last[1], last_message=last[2],
                       last_conversations=last[3], last_messages=last[4],
                       last_bundles=last[5])
        return out


def _summary(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
