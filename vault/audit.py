"""The audit log: who did what, when and why, in a hash chain.

Every search, export, erasure, restore, ingest and key change is one row of
``audit_log`` in the store. Each entry's hash covers its own fields and the
hash of the entry before it::

    hash = SHA-256(canonical JSON of {seq, at, operator, action, target,
                                      purpose, detail, prev})

with ``prev`` = 64 zeros for the first entry. :func:`verify` walks the chain
and names the first entry that is missing, altered, reordered or no longer
chained; the numbering comes from ``AUTOINCREMENT``, so removing the newest
entries is detected too (SQLite remembers the highest number it gave).
A chain alone cannot show that its newest entries were cut off (nor a
chain rewritten from some entry on) by someone who can write the file and
also resets ``sqlite_sequence``. So :func:`verify` also asks a witness: the
state file (:mod:`vault.statefile`, signed by the vault's key, written
after every change of GDPR state and every ingest run) records the log's
entry count and head hash each time it is saved; a log shorter than that,
or with another hash at that entry, is broken (``audit verify`` exit 3,
``vault status`` CRITICAL), unless a ``rebuild`` entry names that head.

The online side is a second witness. Every receipt and answer the vault
signs carries the log's :func:`position`: ``audit_chain`` (the hash of its
first entry, which names the chain), ``audit_entries`` (the number of the
head entry) and ``audit_head``. The exporter keeps the positions its
verified receipts state, per vault, and ``export status`` judges them
(:mod:`vault.acks`): the same chain and entry number with another head is
a rewritten log (CRITICAL); a receipt signed later (by its ``at``, not by
when it arrived: sticks come back out of order) showing fewer entries of
the same chain than one signed earlier is a cut (CRITICAL); a chain not
seen before from a known vault is a WARNING (``vault rebuild`` starts a new
chain, whose ``rebuild`` entry names the old head; the exporter sees only
hashes and cannot tell a rebuild from a log rewritten from its first entry).

What is still not detected: removing or rewriting entries newer than the
last state file save (searches alone do not save it) and newer than the
last receipt the online side has read; a vault that never sends a receipt
again; a tail cut and grown again past every entry number a receipt showed
before the next receipt is read (no two receipts then name the same entry);
someone holding the vault's secret key (root on the vault) who rewrites log
and state file together, unless receipts already online contradict it;
and, when the key is passphrase-protected and no passphrase is at hand, the
witness is not read (said in ``audit verify``'s output). A vault clock set
back makes honest receipts look like a cut: ``vault status`` checks the
clock.

Personal data never goes into the log: identifiers appear in ``target``
only as keyed hashes (:func:`identifier_target`), and ``detail`` holds
counts, ids of bundles and cases, fingerprints.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault import canonical, timestamps

GENESIS = "0" * 64
_COLUMNS = "seq, at, operator, action, target, purpose, detail, prev_hash, hash"


@dataclass(frozen=True)
class Broken:
    """The first entry at which the chain does not hold, and why."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"audit log entry {self.seq}: {self.problem}"


#: /proc/self/loginuid when no login set it (containers, CI, services)
_UNSET_LOGINUID = 4294967295


@dataclass(frozen=True)
class Operator:
    """Who acts, and how chatvault knows: ``loginuid``, ``uid`` or ``sudo_uid``."""

    name: str
    how: str


def login_uid() -> int | None:
    """The login uid PAM set at login (kept across sudo and su), None when unset.

    Changing it needs CAP_AUDIT_CONTROL, so a user cannot pass for another
    by setting an environment variable (``SUDO_USER`` is never read).
    """
    try:
        uid = int(Path("/proc/self/loginuid").read_text("ascii").strip())
    except (OSError, ValueError):
        return None
    return None if uid == _UNSET_LOGINUID else uid


def identify() -> Operator:
    """The person acting: the login uid, else the real uid (SUDO_UID only for root).

    The tests simulate two operators by replacing this function. Root on
    the vault can still forge any identity (and rewrite the log): four-eyes
    is an accountability control between login accounts, not a barrier
    against root.
    """
    uid = login_uid()
    if uid is not None:
        return Operator(_user_name(uid), "loginuid")
    uid = os.getuid()
    sudo_uid = os.environ.get("SUDO_UID", "")
    if uid == 0 and sudo_uid.isdigit():
        return Operator(_user_name(int(sudo_uid)), "sudo_uid")
    return Operator(_user_name(uid), "uid")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return f"uid:{uid}"


def operator() -> str:
    """The name of the person acting (:func:`identify`)."""
    return identify().name


def entry_hash(seq: int, at: str, who: str, action: str, target: str | None,
               purpose: str | None, detail: str | None, prev: str) -> str:
    body = {"seq": seq, "at": at, "operator": who, "action": action, "target": target,
            "purpose": purpose, "detail": detail, "prev": prev}
    return hashlib.sha256(canonical.dumps(body)).hexdigest()


def head(conn: sqlite3.Connection) -> str:
    """Hash of the newest entry (64 zeros for an empty log)."""
    row = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


@dataclass(frozen=True)
class Position:
    """Where the log stands, as receipts and answers state it (see the module doc)."""

    chain: str    # hash of the first entry held; GENESIS for an empty log
    entries: int  # number (seq) of the head entry; 0 for an empty log
    head: str     # hash of the head entry; GENESIS for an empty log

    def fields(self) -> dict[str, Any]:
        """The body fields of a receipt or answer."""
        return {"audit_head": self.head, "audit_entries": self.entries,
                "audit_chain": self.chain}

    @classmethod
    def stated(cls, body: dict[str, Any]) -> "Position | None":
        """The position a signed body states; None when it states none (older vaults)
        or a malformed one."""
        chain, entries, head_ = (body.get(k) for k in ("audit_chain", "audit_entries",
                                                       "audit_head"))
        if not (_is_hash(chain) and _is_hash(head_) and type(entries) is int and entries >= 0):
            return None
        return cls(str(chain), int(entries), str(head_))


def _is_hash(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def position(conn: sqlite3.Connection) -> Position:
    """The log's position now, for the receipts and answers the vault signs.

    The chain is named by the first entry *held*: a log whose first entries
    were removed names another chain, which the online side notices.
    """
    first = conn.execute("SELECT hash FROM audit_log ORDER BY seq LIMIT 1").fetchone()
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    if first is None or last is None:
        return Position(GENESIS, 0, GENESIS)
    return Position(str(first[0]), int(last[0]), str(last[1]))


def _last_number(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
    return int(row[0]) if row else 0


def append(conn: sqlite3.Connection, action: str, *, target: str | None = None,
           purpose: str | None = None, detail: dict[str, Any] | None = None) -> str:
    """Add one entry (inside the caller's transaction, or its own); returns its hash."""
    from vault import store

    with store.transaction(conn):
        seq = _last_number(conn) + 1
        at = timestamps.now_utc()
        ident = identify()
        who = ident.name
        # how the operator was identified is part of the entry, under the hash
        text = canonical.dumps({**(detail or {}), "operator_from": ident.how}).decode("utf-8")
        prev = head(conn)
        digest = entry_hash(seq, at, who, action, target, purpose, text, prev)
        conn.execute(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                     (seq, at, who, action, target, purpose, text, prev, digest))
    return digest


def append_to_home(home: Path, action: str, *, target: str | None = None,
                   purpose: str | None = None, detail: dict[str, Any] | None = None) -> str:
    """:func:`append` to the store of the vault at ``home``."""
    from vault import store

    conn = store.open_store(Path(home) / store.FILE_NAME)
    try:
        return append(conn, action, target=target, purpose=purpose, detail=detail)
    finally:
        conn.close()


def identifier_target(home: Path, conn: sqlite3.Connection, kind: str, value: str) -> str:
    """``kind:<keyed hash>`` for an already normalised identifier, for ``target``."""
    from vault import tombstones

    key = tombstones.load_key(home, conn)
    return f"{kind}:{key.hash(tombstones.PURPOSE_AUDIT, kind, value)[:32]}"


def verify(conn: sqlite3.Connection) -> Broken | None:
    """The first broken entry, or None when the whole chain holds."""
    expected, prev = 1, GENESIS
    for row in conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq"):
        seq, at, who, action, target, purpose, detail, prev_hash, digest = row
        if seq != expected:
            return Broken(expected, "missing (removed from the log)")
        if prev_hash != prev:
            return Broken(seq, "does not chain to the entry before it "
                               "(an entry was removed, reordered or replaced)")
        if entry_hash(seq, at, who, action, target, purpose, detail, prev_hash) != digest:
            return Broken(seq, "altered: its content does not match its hash")
        prev = digest
        expected += 1
    if _last_number(conn) >= expected:
        return Broken(expected, "missing: the newest entries were removed")
    recorded = witness(conn)
    if recorded is None:
        return None
    count, digest = recorded
    return _against_witness(conn, count, digest, expected - 1)


def _against_witness(conn: sqlite3.Connection, count: int, digest: str,
                     held: int) -> Broken | None:
    if count == 0 or conn.execute("SELECT 1 FROM audit_log WHERE action = 'rebuild' AND "
                                  "instr(detail, ?) LIMIT 1", (digest,)).fetchone():
        return None  # nothing recorded yet, or a rebuild started a new log naming it
    row = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (count,)).fetchone()
    if row is None:
        return Broken(held + 1, f"missing: the state file recorded {count} entries (head "
                                f"{digest[:16]}), the log holds {held}: its newest entries "
                                "were removed")
    if row[0] != digest:
        return Broken(count, f"differs from the head the state file recorded "
                             f"({digest[:16]}): the log was rewritten")
    return None


#: why the last :func:`witness` call could not read the state file (None: it could)
witness_note: str | None = None


def witness(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """(entries, head) the state file beside this store recorded; None if there is none.

    The store's home is the folder of its file; a store elsewhere (tests, a
    copy) has no witness. The state file is verified against the vault's
    own key and only its header is decrypted.
    """
    global witness_note
    from vault import bundle, statefile
    from vault.errors import ChatvaultError
    from vault.home import Home

    witness_note = None
    row = conn.execute("PRAGMA database_list").fetchone()
    path = statefile.path_of(Path(row[2]).parent) if row and row[2] else None
    if path is None:
        return None
    if not path.is_file():
        if conn.execute("SELECT 1 FROM audit_log LIMIT 1").fetchone():
            witness_note = (f"there is no state file ({path}), so entries cut off the end "
                            "of the log would not be seen; 'vault status' says why")
        return None
    try:
        ident = Home(path.parent.parent).identity()
        with bundle.Bundle(path) as b:
            b.check_signer(statefile.OwnKey(ident.public()), "vault")
            b.verify_signature()
            first = next(iter(b.items(ident)))
        recorded = canonical.loads(first.data)["audit"]  # type: ignore[union-attr]
        return int(recorded["entries"]), str(recorded["head"])
    except (ChatvaultError, OSError, StopIteration, KeyError, TypeError, ValueError) as exc:
        witness_note = f"the state file's record of the log was not read ({exc})"
        return None


def check(conn: sqlite3.Connection) -> int:
    """The number of entries when the whole chain holds; AuditChainBroken (exit 3) if not."""
    from vault.errors import AuditChainBroken

    broken = verify(conn)
    if broken is not None:
        raise AuditChainBroken(f"{broken}; entries from {broken.seq} on cannot be trusted "
                               "(compare with the audit position of the last receipts "
                               "the online side holds: 'chatvault export status')")
    return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])


def entries(conn: sqlite3.Connection, limit: int = 100, *, action: str | None = None,
            since: str | None = None) -> list[dict[str, Any]]:
    """The newest entries, newest first, as dicts (for ``audit show``).

    ``action`` keeps one kind (``erase``) or a family (``erase*``); ``since``
    is a canonical UTC time.
    """
    where, params = [], []
    if action:
        if action.endswith("*"):
            where.append("action LIKE ?")
            params.append(action[:-1].replace("%", "") + "%")
        else:
            where.append("action = ?")
            params.append(action)
    if since:
        where.append("at >= ?")
        params.append(since)
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    cur = conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur]
