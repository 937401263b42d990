"""The exporter's memory: ``H/state/export.db``, a small SQLite file.

What it remembers (sources and their chains, conversations' content hashes,
bundles, acknowledgements, strays, resolutions, run history) and why is
described with the tables in :mod:`vault.exportschema`; run history lives in
:mod:`vault.exportruns`. This module opens the database, migrates it and
keeps the exporter's bookkeeping.

A bundle, its sequence and the hashes of the conversations it carries are
recorded in **one transaction** (:meth:`ExportState.record_bundle`), after
the sealed file is durable in the local outbox and before it goes anywhere
else. That is what makes a crash leave either a complete recorded bundle or
nothing (see :mod:`vault.exportrecovery` for the recovery side). Commits use
``synchronous=FULL``: a bundle that reached a stick must never be forgotten,
or the next run would seal a different bundle under the same sequence (a
fork the vault refuses).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from vault import timestamps
from vault.errors import EXIT_OTHER, ChatvaultError, MediaIOError
from vault.exportaudit import AuditPositions
from vault.exportruns import RunHistory
from vault.exportschema import (BUNDLE_COLS, MIGRATIONS, Ack, BundleRow, Stray,
                                bundle_row)

FILE_NAME = "export.db"
LOCK_NAME = "export.lock"
_BATCH = 2000



class ExportBusy(ChatvaultError):
    """Another export command holds the state lock."""

    exit_code = EXIT_OTHER
    code = "busy"


class ChainBroken(ChatvaultError):
    """A bundle that does not continue its source's chain: a bug, never data."""

    exit_code = EXIT_OTHER
    code = "chain"


class ExportState(RunHistory, AuditPositions):
    """The open state database. One per command; see :meth:`open`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise _unusable(exc, self.path) from None
        self.db.execute("CREATE TEMP TABLE pending (conversation_id TEXT PRIMARY KEY, "
                        "content_hash TEXT NOT NULL)")
        self.db.execute("CREATE TEMP TABLE scan (conversation_id TEXT PRIMARY KEY, "
                        "content_hash TEXT NOT NULL, file INTEGER NOT NULL, "
                        "position INTEGER NOT NULL)")
        self.db.execute("CREATE INDEX temp.scan_order ON scan (file, position)")
        self._held: list[tuple[str, str]] = []
        self._seen: list[tuple[str, str, int, int]] = []

    @classmethod
    def open(cls, home: Path) -> "ExportState":
        folder = Path(home) / "state"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise MediaIOError(f"cannot create the state folder ({exc.strerror})",
                               path=folder) from None
        return cls(folder / FILE_NAME)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ExportState":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, step in enumerate(MIGRATIONS[version:], version + 1):
            with self.transaction():
                for statement in step.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- sources and conversations ----------------------------------------------------

    def chain(self, source: str) -> tuple[int, str | None]:
        """(last sequence, hash of the last bundle) of ``source``; (0, None) when new."""
        row = self.db.execute("SELECT last_sequence, last_hash FROM sources WHERE name = ?",
                              (source,)).fetchone()
        return (row[0], row[1]) if row else (0, None)

    def known_sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM sources ORDER BY name")]

    def exported_hash(self, source: str, conversation_id: str) -> str | None:
        row = self.db.execute("SELECT content_hash FROM conversations WHERE source = ? AND "
                              "conversation_id = ?", (source, conversation_id)).fetchone()
        return row[0] if row else None

    # The scan: which occurrence of each conversation is its current version.
    # Working memory lives in TEMP tables, so memory stays flat however large
    # the export; nothing of it is ever committed to the state file.

    def scan_reset(self) -> None:
        self._seen.clear()
        self.db.execute("DELETE FROM temp.scan")

    def scan_note(self, conversation_id: str, content_hash: str, file: int,
                  position: int) -> None:
        """Note one occurrence; a later occurrence of the same id replaces it."""
        self._seen.append((conversation_id, content_hash, file, position))
        if len(self._seen) >= _BATCH:
            self._flush_seen()

    def _flush_seen(self) -> None:
        if self._seen:
            with self.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO temp.scan VALUES (?, ?, ?, ?)",
                               self._seen)
            self._seen.clear()

    def scan_changed(self, source: str) -> Iterator[tuple[int, int]]:
        """(file index, position) of current versions that differ from what was sealed.

        In reading order, fetched a batch at a time with no statement left
        open, so bundles can be committed while the caller walks the result.
        """
        self._flush_seen()
        last = (-1, -1)
        while True:
            rows = self.db.execute(
                "SELECT s.file, s.position FROM temp.scan s LEFT JOIN conversations c ON "
                "c.source = ? AND c.conversation_id = s.conversation_id "
                "WHERE (s.file, s.position) > (?, ?) AND "
                "(c.content_hash IS NULL OR c.content_hash != s.content_hash) "
                "ORDER BY s.file, s.position LIMIT ?", (source, *last, _BATCH)).fetchall()
            if not rows:
                return
            yield from ((int(f), int(p)) for f, p in rows)
            last = rows[-1]

    def scan_count(self) -> int:
        self._flush_seen()
        return int(self.db.execute("SELECT count(*) FROM temp.scan").fetchone()[0])

    def hold(self, conversation_id: str, content_hash: str) -> None:
        """Remember a conversation added to the bundle being sealed (not yet committed)."""
        self._held.append((conversation_id, content_hash))
        if len(self._held) >= _BATCH:
            self._flush_held()

    def _flush_held(self) -> None:
        if self._held:
            with self.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO temp.pending VALUES (?, ?)",
                               self._held)
            self._held.clear()

    def drop_held(self) -> None:
        self._held.clear()
        self.db.execute("DELETE FROM temp.pending")

    def record_bundle(self, row: BundleRow, prev_hash: str | None,
                      fault: Callable[[str], None] = lambda step: None) -> None:
        """Commit a sealed bundle: its row, the new chain head, the held conversations.

        Refuses (and changes nothing) when ``row`` does not continue the chain,
        which would mean two writers or a bug.
        """
        self._flush_held()
        with self.transaction() as db:
            last, last_hash = self.chain(row.source)
            if row.sequence != last + 1 or prev_hash != last_hash:
                raise ChainBroken(f"bundle {row.file_name} does not follow sequence {last} "
                                  "of its source; nothing recorded")
            db.execute("INSERT INTO sources (name, last_sequence, last_hash) VALUES (?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET last_sequence = excluded.last_sequence,"
                       " last_hash = excluded.last_hash", (row.source, row.sequence, row.sha256))
            db.execute(f"INSERT INTO bundles ({BUNDLE_COLS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row.source, row.sequence, row.file_name, row.sha256, row.size,
                        row.plaintext_size, row.conversations, row.messages,
                        json.dumps(list(row.recipients)), row.created_at, None, None, None,
                        None))
            db.execute("INSERT OR REPLACE INTO conversations SELECT ?, conversation_id, "
                       "content_hash, ? FROM temp.pending", (row.source, row.sequence))
            db.execute("DELETE FROM temp.pending")
            fault("recording")

    # -- bundles --------------------------------------------------------------------

    def bundles(self, *, unacknowledged: bool = False,
                source: str | None = None) -> list[BundleRow]:
        where, args = [], []
        if unacknowledged:
            where.append("acknowledged_at IS NULL")
        if source is not None:
            where.append("source = ?")
            args.append(source)
        sql = f"SELECT {BUNDLE_COLS} FROM bundles"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [bundle_row(r) for r in self.db.execute(sql + " ORDER BY source, sequence", args)]

    def bundle_by_sha(self, sha256: str) -> BundleRow | None:
        row = self.db.execute(f"SELECT {BUNDLE_COLS} FROM bundles WHERE sha256 = ?",
                              (sha256,)).fetchone()
        return bundle_row(row) if row else None

    def bundle_by_name(self, file_name: str) -> BundleRow | None:
        row = self.db.execute(f"SELECT {BUNDLE_COLS} FROM bundles WHERE file_name = ?",
                              (file_name,)).fetchone()
        return bundle_row(row) if row else None

    def _stamp(self, column: str, sha256: str, at: str | None) -> None:
        with self.transaction() as db:
            db.execute(f"UPDATE bundles SET {column} = ? WHERE sha256 = ?",
                       (at or timestamps.now_utc(), sha256))

    def mark_written(self, sha256: str, at: str | None = None) -> None:
        self._stamp("media_written_at", sha256, at)

    def mark_off_media(self, file_name: str) -> None:
        """The copy on the stick was removed (damaged): the bundle is on no stick now."""
        with self.transaction() as db:
            db.execute("UPDATE bundles SET media_written_at = NULL WHERE file_name = ? AND "
                       "acknowledged_at IS NULL", (file_name,))

    def mark_acknowledged(self, sha256: str, at: str | None = None) -> None:
        self._stamp("acknowledged_at", sha256, at)

    def mark_local_deleted(self, sha256: str, at: str | None = None) -> None:
        self._stamp("local_deleted_at", sha256, at)

    def abandon(self, row: BundleRow) -> int:
        """Give up on a lost bundle: forget the conversations last sealed in it.

        The next run seals them again (those still in the export files) in a
        new bundle; returns how many were forgotten.
        """
        with self.transaction() as db:
            db.execute("UPDATE bundles SET abandoned_at = ? WHERE sha256 = ?",
                       (timestamps.now_utc(), row.sha256))
            cur = db.execute("DELETE FROM conversations WHERE source = ? AND sequence = ?",
                             (row.source, row.sequence))
            return int(cur.rowcount)

    # -- acknowledgements -------------------------------------------------------------

    def record_ack(self, sha256: str, vault: str, status: str, reason: str | None,
                   receipt_at: str, copy_sha256: str | None = None) -> bool:
        """Keep the latest receipt per bundle and vault; True when this one changed it."""
        with self.transaction() as db:
            row = db.execute("SELECT status, reason, receipt_at FROM acks WHERE sha256 = ? "
                             "AND vault = ?", (sha256, vault)).fetchone()
            if row is not None:
                if (row[0], row[1], row[2]) == (status, reason, receipt_at):
                    return False
                if _moment(receipt_at) < _moment(row[2]):
                    return False
            db.execute("INSERT OR REPLACE INTO acks VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (sha256, vault, status, reason, receipt_at, timestamps.now_utc(),
                        copy_sha256))
            return True

    def record_stray(self, sha256: str, vault: str, copy_sha256: str, reason: str | None,
                     receipt_at: str) -> bool:
        """Note a damaged stray copy of a bundle ``vault`` holds; True when new."""
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO strays VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (sha256, vault, copy_sha256, reason, receipt_at,
                              timestamps.now_utc()))
            return cur.rowcount == 1

    def strays(self) -> list[Stray]:
        rows = self.db.execute("SELECT * FROM strays ORDER BY sha256, vault, receipt_at")
        return [Stray(*r) for r in rows]

    def mark_stray_removed(self, copy_sha256: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE strays SET removed_at = ? WHERE copy_sha256 = ? AND "
                       "removed_at IS NULL", (timestamps.now_utc(), copy_sha256))

    def resolve(self, sha256: str, vault: str, receipt_at: str, how: str,
                note: str | None) -> None:
        """Record that a person (or a reseal) settled one quarantine report."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO resolutions VALUES (?, ?, ?, ?, ?, ?)",
                       (sha256, vault, receipt_at, timestamps.now_utc(), how, note))

    def resolution(self, sha256: str, vault: str, receipt_at: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT resolved_at, how, note FROM resolutions WHERE sha256 = ?"
                              " AND vault = ? AND receipt_at = ?",
                              (sha256, vault, receipt_at)).fetchone()
        return {"at": row[0], "how": row[1], "note": row[2]} if row else None

    def acks(self, sha256: str | None = None) -> list[Ack]:
        if sha256 is None:
            rows = self.db.execute("SELECT * FROM acks ORDER BY sha256, vault")
        else:
            rows = self.db.execute("SELECT * FROM acks WHERE sha256 = ? ORDER BY vault",
                                   (sha256,))
        return [Ack(*r) for r in rows]


def _moment(text: str) -> Any:
    try:
        return timestamps.parse(text)
    except timestamps.TimestampError:
        return timestamps.parse("1970-01-01T00:00:00Z")


@contextmanager
def locked(home: Path) -> Iterator[None]:
    """Hold ``H/state/export.lock`` so only one export command changes state at a time."""
    folder = Path(home) / "state"
    folder.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise ExportBusy(f"another export command is running (pid {holder or '?'}); "
                             "try again when it has finished", path=folder / LOCK_NAME) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _unusable(exc: sqlite3.DatabaseError, path: Path) -> ChatvaultError:
    """The state database cannot be opened: say why in words an operator can act on."""
    from vault import store

    if store.read_only(exc, path):
        return MediaIOError(f"export state cannot be used: {store.READ_ONLY}", path=path)
    if store.is_busy(exc):
        return ExportBusy(f"export state is locked by another process ({exc})", path=path)
    return MediaIOError(f"export state cannot be used: {exc}", path=path)
