"""Recorded schema migrations: the only way the store's schema is created or changed.

Each step is a module in this package named ``mNNNN_<what>.py`` defining::

    def apply(db: sqlite_utils.Database) -> None: ...

Steps run in number order, each in its own transaction together with the row
that records it in the ``migrations`` table, so a crash leaves the schema at
one step or the next, never in between (SQLite DDL is transactional). To
change the schema, add a new step with the next number; never edit a step
that has shipped, since stores in the field have already applied it.

A store that records a step this code does not know was written by a newer
chatvault and is refused rather than used half-understood.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sqlite3
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from vault import timestamps
from vault.errors import UnsupportedVersion

if TYPE_CHECKING:
    import sqlite_utils

_STEP_NAME = re.compile(r"^m(\d{4})_([a-z0-9_]+)$")

_LEDGER = """CREATE TABLE IF NOT EXISTS migrations (
    number INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def steps() -> list[Step]:
    """Every step shipped in this package, in order (numbers must be 1, 2, 3...).

    A step's module is imported when it is applied: opening an up-to-date
    store (every command does) imports none of them, nor sqlite-utils.
    """
    found: list[Step] = []
    for info in pkgutil.iter_modules(__path__):
        match = _STEP_NAME.match(info.name)
        if match:
            found.append(Step(int(match.group(1)), match.group(2),
                              _applier(f"{__name__}.{info.name}")))
    found.sort(key=lambda s: s.number)
    for expected, step in enumerate(found, 1):
        if step.number != expected:
            raise RuntimeError(f"migration steps must be numbered without gaps: "
                               f"expected {expected:04d}, found {step.number:04d}")
    return found


def _applier(module: str) -> Callable[[sqlite_utils.Database], None]:
    def apply(db: sqlite_utils.Database) -> None:
        mod: ModuleType = importlib.import_module(module)
        mod.apply(db)
    return apply


def applied(conn: sqlite3.Connection) -> list[int]:
    conn.execute(_LEDGER)
    return [row[0] for row in conn.execute("SELECT number FROM migrations ORDER BY number")]


def migrate(conn: sqlite3.Connection, path: str = "store") -> list[int]:
    """Apply every step not yet recorded; returns the numbers applied now.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each step
    takes the write lock first (BEGIN IMMEDIATE) and checks the ledger again
    inside the transaction, so two processes opening a new store at once
    apply each step exactly once.
    """
    known = steps()
    done = applied(conn)
    if done and done[-1] > len(known):
        raise UnsupportedVersion(f"store schema is at step {done[-1]}, this chatvault knows "
                                 f"{len(known)}: written by a newer version; upgrade",
                                 path=path)
    if len(done) == len(known):
        return []
    import sqlite_utils

    now: list[int] = []
    db = sqlite_utils.Database(conn, execute_plugins=False)
    for step in known:
        if step.number in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM migrations WHERE number = ?",
                            (step.number,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            step.apply(db)
            conn.execute("INSERT INTO migrations (number, name, applied_at) VALUES (?, ?, ?)",
                         (step.number, step.name, timestamps.now_utc()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        now.append(step.number)
    return now
