"""The exporter's memory: ``H/state/export.db``, a small SQLite file.

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

A bundle, its sequence and the hashes of the conversations it carries are
recorded in **one transaction** (:meth:`ExportState.record_bundle`), after
the sealed file is durable in the local outbox and before it goes anywhere
else. That is what makes a crash leave either a complete recorded bundle or
nothing (see :mod:`vault.exporter` for the recovery side). Commits use
``synchronous=FULL``: a bundle that reached a stick must never be forgotten,
or the next run would seal a different bundle under the same sequence (a
fork the vault refuses).

Schema changes are numbered steps in ``_MIGRATIONS`` (``PRAGMA user_version``
counts those applied); never edit a released step, add one.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from vault import timestamps
from vault.errors import ChatvaultError, EXIT_OTHER

FILE_NAME = "export.db"
LOCK_NAME = "export.lock"
_BATCH = 2000

_MIGRATIONS = [
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
]


class ExportBusy(ChatvaultError):
    """Another export command holds the state lock."""

    exit_code = EXIT_OTHER
    code = "busy"


class ChainBroken(ChatvaultError):
    """A bundle that does not continue its source's chain: a bug, never data."""

    exit_code = EXIT_OTHER
    code = "chain"


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


class ExportState:
    """The open state database. One per command; see :meth:`open`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
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
        folder.mkdir(mode=0o700, exist_ok=True)
        return cls(folder / FILE_NAME)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ExportState":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, step in enumerate(_MIGRATIONS[version:], version + 1):
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
            db.execute(f"INSERT INTO bundles ({_BUNDLE_COLS}) VALUES "
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
        sql = f"SELECT {_BUNDLE_COLS} FROM bundles"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_bundle(r) for r in self.db.execute(sql + " ORDER BY source, sequence", args)]

    def bundle_by_sha(self, sha256: str) -> BundleRow | None:
        row = self.db.execute(f"SELECT {_BUNDLE_COLS} FROM bundles WHERE sha256 = ?",
                              (sha256,)).fetchone()
        return _bundle(row) if row else None

    def bundle_by_name(self, file_name: str) -> BundleRow | None:
        row = self.db.execute(f"SELECT {_BUNDLE_COLS} FROM bundles WHERE file_name = ?",
                              (file_name,)).fetchone()
        return _bundle(row) if row else None

    def _stamp(self, column: str, sha256: str, at: str | None) -> None:
        with self.transaction() as db:
            db.execute(f"UPDATE bundles SET {column} = ? WHERE sha256 = ?",
                       (at or timestamps.now_utc(), sha256))

    def mark_written(self, sha256: str, at: str | None = None) -> None:
        self._stamp("media_written_at", sha256, at)

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

    # -- run history ------------------------------------------------------------------

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
        row = self.db.execute("SELECT id, started_at, finished_at, exit_code FROM runs "
                              "WHERE command = ? ORDER BY id DESC LIMIT 1",
                              (command,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "started_at": row[1], "finished_at": row[2],
                "exit_code": row[3]}

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
