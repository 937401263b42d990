"""The vault store: one SQLite file, ``H/store.db``.

The file holds plaintext: a new store is created 0600, and its ``-wal``
and ``-shm`` follow its mode.

Connections. :func:`open_store` returns a plain :class:`sqlite3.Connection`,
not a ``sqlite_utils.Database``: every part of the vault (audit, GDPR,
restore) speaks SQL to it, and ``sqlite_utils.Database(conn)`` wraps it for
free where sqlite-utils helps (the migrations use it to create tables). The
connection is in autocommit mode; write with :func:`transaction`, which
takes the write lock up front (``BEGIN IMMEDIATE``) so that a check made
inside it (is this bundle new?) still holds when it commits. Every
connection has WAL, ``foreign_keys=ON``, ``secure_delete=ON`` (erasure
overwrites what it deletes) and ``synchronous=FULL`` (a receipt is only
written after its commit is on disk).

A busy store. Ingest holds the write lock for each bundle it loads, so a
DPO command that writes (every search leaves an audit entry) may have to
wait: a connection waits up to :func:`busy_timeout` seconds (five minutes,
or ``CHATVAULT_BUSY_TIMEOUT``), and :func:`transaction` says on stderr,
after a second or so, that it is waiting. A wait that runs out is
:class:`StoreBusy` (exit 1, a message saying what to do), never an
internal error; :func:`is_busy` tells that failure from others for the
top-level handler (:func:`vault.quickcli.guarded`).

The schema lives in :mod:`vault.migrations` (its first step draws every
table); :class:`~vault.upsert.Loader` upserts the conversations of one
bundle; full-text folding and :func:`~vault.fulltext.search` live in
:mod:`vault.fulltext`; :func:`~vault.storedump.dump` gives a canonical
picture of everything held, to compare stores; all are re-exported here.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vault import migrations
from vault.errors import InputRejected, MediaIOError, StoreBusy, StoreDamaged, StoreMissing

if TYPE_CHECKING:
    import sqlite_utils

    from vault.fulltext import Hit, search
    from vault.storedump import dump
    from vault.upsert import Loader, LoadCounts

__all__ = ["Hit", "LoadCounts", "Loader", "StoreBusy", "connect", "db", "delete_conversation",
           "dump", "is_busy", "open_store", "read_attachment", "search", "transaction"]

FILE_NAME = "store.db"

# Re-exported on first use: a one-shot lookup ('subject find') opens the store
# without paying for the ingest machinery (zstandard, phonenumbers, FTS folding).
_LAZY = {"Hit": "vault.fulltext", "search": "vault.fulltext", "Loader": "vault.upsert",
         "LoadCounts": "vault.upsert", "dump": "vault.storedump"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: how long a connection waits for the write lock unless CHATVAULT_BUSY_TIMEOUT says
BUSY_TIMEOUT = 300.0
#: after how many seconds of waiting :func:`transaction` tells the operator
NOTICE_AFTER = 1.5


def busy_error(path: Path | str | None) -> StoreBusy:
    where = f" at {path}" if path else ""
    return StoreBusy(f"the vault store{where} is busy (an ingest is running); try again "
                     "when 'vault status' shows it finished")


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY, "database is locked": the write lock was not free in time."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_BUSY") or "database is locked" in str(exc)


def busy_timeout() -> float:
    """Seconds to wait for the write lock: ``CHATVAULT_BUSY_TIMEOUT``, else five minutes."""
    text = os.environ.get("CHATVAULT_BUSY_TIMEOUT")
    try:
        return max(float(text), 0.0) if text else BUSY_TIMEOUT
    except ValueError:
        return BUSY_TIMEOUT


def connect(path: Path | str, timeout: float | None = None, *,
            create: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas, without touching the schema.

    ``timeout`` is how long a write waits for the lock (:func:`busy_timeout`).
    Only ``create`` makes a new store (``chatvault init``, a rebuild): a
    vault whose store vanished must not carry on with an empty one, which
    would answer "nothing held" to every search and take erased people back
    from any old bundle (:func:`require_existing`).
    """
    if create:
        _create_private(path)
    else:
        require_existing(path)
    wait = busy_timeout() if timeout is None else timeout
    conn = None
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=wait)
        conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = wal")
        for pragma in ("foreign_keys = ON", "secure_delete = ON", "synchronous = FULL",
                       "cache_size = -65536"):
            conn.execute(f"PRAGMA {pragma}")
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise (busy_error(path) if is_busy(exc) else _error(exc, path)) from None
    return conn


def _create_private(path: Path | str) -> None:
    """Create a new store file 0600: it holds plaintext, whatever the umask says.

    SQLite gives the ``-wal`` and ``-shm`` files it creates later the mode of
    the database file, so they are 0600 too. An existing file is left as it
    is (``vault status`` warns when group or others may read it).
    """
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise MediaIOError(f"store cannot be created: {exc.strerror}", path=path) from None


def require_existing(path: Path | str) -> None:
    """Refuse a store file that is missing or empty (:class:`StoreMissing`)."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    where = Path(path)
    try:
        size = where.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as exc:
        raise MediaIOError(f"store cannot be used: {exc.strerror}", path=path) from None
    wal = Path(f"{where}-wal")
    if size or (size == 0 and wal.is_file() and wal.stat().st_size):
        return
    if size is None:
        _refuse_other_homes(where.parent)
    state = where.parent / "archive" / "vault-state.cvs"
    after = (" The state file (archive/vault-state.cvs) and the archived bundles hold "
             "everything: rebuild from them with 'chatvault vault rebuild --into NEWHOME "
             f"--home {where.parent}', check it with 'vault digest', then use NEWHOME."
             if state.is_file() else
             " Restore it from a backup, or rebuild from the archive and state file "
             "('chatvault vault rebuild --into NEWHOME').")
    raise StoreMissing(("the store is missing" if size is None else "the store is an empty "
                        "file") + "; nothing was created in its place (an empty store would "
                        "answer 'nothing held' and take erased people back from old "
                        "bundles)." + after, path=path)


def _refuse_other_homes(home: Path) -> None:
    """No store because ``home`` is no vault: say that, not "restore it from a backup"."""
    from vault.errors import ChatvaultError, UsageError
    from vault.home import Home

    try:
        role = Home(home).require().kind()  # NotAHome without keys/public.key
    except UsageError:
        raise
    except ChatvaultError:
        return  # a damaged key file is said by the commands that need it
    if role != "vault":
        raise UsageError(f"is {'an' if role[0] in 'aeiou' else 'a'} {role} home, not a "
                         "vault: is --home right?", path=home)


def open_store(path: Path | str, *, create: bool = False) -> sqlite3.Connection:
    """Open and migrate the store at ``path``; only ``create`` makes a new one."""
    conn = connect(path, create=create)
    try:
        migrations.migrate(conn, str(path))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise (busy_error(path) if is_busy(exc) else _error(exc, path)) from None
    except BaseException:
        conn.close()
        raise
    return conn


_DAMAGED = ("malformed", "file is not a database", "database corrupt",
            "Could not decode to UTF-8")


def is_damaged(exc: BaseException) -> bool:
    """Whether SQLite says the file itself is damaged (not busy, not read-only).

    Stored text that is not UTF-8 counts: chatvault writes only UTF-8, so
    such bytes are damage (Python reports them as "Could not decode").
    """
    return isinstance(exc, sqlite3.DatabaseError) and any(t in str(exc) for t in _DAMAGED)


def error_text(exc: BaseException) -> str:
    """SQLite's message without the stored text Python quotes in it (personal data)."""
    return str(exc).split(" with text ", 1)[0]


def damaged_error(exc: BaseException, path: Path | str) -> StoreDamaged:
    return StoreDamaged(
        f"the store is damaged (SQLite: {error_text(exc)}): keep a copy of the file for "
        "analysis, stop "
        "the vault daemon, and rebuild the store from the archive and the state file "
        "('chatvault vault rebuild --into NEWHOME'); 'chatvault vault digest' on the "
        "rebuilt home shows what it holds", path=path)


def _error(exc: sqlite3.DatabaseError, path: Path | str) -> Exception:
    text = str(exc)
    if read_only(exc, path):
        return MediaIOError(f"store cannot be used: {READ_ONLY}", path=path)
    if "disk I/O" in text or "unable to open" in text or "disk is full" in text:
        return MediaIOError(f"store cannot be used: {text}", path=path)
    if is_damaged(exc):
        return damaged_error(exc, path)
    return InputRejected(f"not a usable chatvault store: {text}", path=path)


READ_ONLY = ("its folder or file is read-only, and SQLite writes beside a database even "
             "to read it (write-ahead log): copy the home to writable storage to inspect it")


def read_only(exc: sqlite3.DatabaseError, path: Path | str) -> bool:
    """Whether ``exc`` came from a read-only database file or folder."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return True
    if "unable to open" not in text and "disk I/O" not in text:
        return False
    where = Path(path)
    return not os.access(where.parent, os.W_OK) or (where.exists()
                                                   and not os.access(where, os.W_OK))


def check_integrity(conn: sqlite3.Connection, path: Path | str) -> None:
    """SQLite's ``quick_check`` over the whole file; :class:`StoreDamaged` when it fails.

    It reads every page (seconds per gigabyte), so only the commands that
    vouch for the whole store run it (``vault digest``, ``audit verify``).
    """
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        if is_busy(exc):
            raise busy_error(path) from None
        raise damaged_error(exc, path) from None
    if rows != ["ok"]:
        raise damaged_error(RuntimeError("; ".join(rows).replace("\n", " ")[:300]), path)


def db(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """The sqlite-utils view of a store connection."""
    import sqlite_utils

    return sqlite_utils.Database(conn, execute_plugins=False)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All or nothing: BEGIN IMMEDIATE, or a savepoint inside an open transaction."""
    if conn.in_transaction:
        import secrets

        name = f"sp_{secrets.token_hex(8)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    _begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def file_of(conn: sqlite3.Connection) -> str | None:
    """The file a connection's main database is (None in memory)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else None


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, waiting out an ingest; say so if the wait is noticeable.

    SQLite waits in its busy handler; a timer thread tells the operator on
    stderr once the wait lasts (half the timeout, when that is shorter).
    """
    wait = conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    path = file_of(conn)
    timer = threading.Timer(min(NOTICE_AFTER, wait / 2), _notice, (path, wait))
    timer.daemon = True
    timer.start()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise busy_error(path) from None
        raise
    finally:
        timer.cancel()


def _notice(path: str | None, wait: float) -> None:
    where = f" at {path}" if path else ""
    sys.stderr.write(f"chatvault: the vault store{where} is busy (an ingest is running); "
                     f"waiting up to {wait:.0f} s for it\n")
    sys.stderr.flush()


def delete_conversation(conn: sqlite3.Connection, conv_id: int, *,
                        keep_row: bool = False) -> None:
    """Remove a conversation and everything derived from it, index included.

    With ``secure_delete`` the freed pages are zeroed; FTS5 keeps deleted
    terms in its segments until they are merged, so erasure should follow
    with ``INSERT INTO messages_fts(messages_fts) VALUES ('optimize')``.
    """
    conn.execute("DELETE FROM messages_fts WHERE rowid IN "
                 "(SELECT id FROM messages WHERE conversation = ?)", (conv_id,))
    for table in ("mentions", "attachment_refs", "identifiers", "participants", "messages"):
        conn.execute(f"DELETE FROM {table} WHERE conversation = ?", (conv_id,))
    if not keep_row:
        conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))


def read_attachment(conn: sqlite3.Connection, sha256: str) -> Iterator[bytes]:
    """The content of a stored attachment, chunk by chunk."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    for (data,) in conn.execute("SELECT data FROM attachment_chunks WHERE sha256 = ? "
                                "ORDER BY idx", (sha256,)):
        yield dctx.decompress(data)
