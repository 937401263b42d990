"""Tombstones: keyed hashes of erased identifiers, and the filter ingest applies.

When a subject's data is erased, a tombstone records a keyed hash of each
identifier (never the identifier itself) so that an old bundle, a rebuild or
a restore cannot bring the data back: at ingest, a conversation is left out
when any identifier it carries matches a tombstone, whether in a
participant (e-mail, phone, customer id, platform id, name) or written in
its messages (e-mail, phone), or when the conversation itself is tombstoned
(kind ``conversation``, value ``<source>/<conversation_id>``).

The key. ``H/keys/identifiers.key`` holds 32 random bytes (hex, 0600),
made on first use. Keys for each purpose are derived from it by HMAC with
the purpose's name, so a tombstone hash and an audit-log target hash of the
same identifier differ and cannot be joined without the key. The store
keeps a check value of the key (``settings.identifier_key_check``): a
missing or replaced key file is refused instead of silently matching
nothing. What this does not protect against: anyone holding both the
store and the key file can test guesses of identifiers.

Values are hashed in their normal form (:func:`normalise`): an e-mail
case-folded, a phone number in E.164.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from vault import identifiers, timestamps
from vault.errors import BadKeyFile, UsageError

KEY_FILE = "identifiers.key"
KINDS = ("email", "phone", "phone_unparsed", "customer_id", "platform_id", "name",
         "conversation")
_CHECK_SETTING = "identifier_key_check"
PURPOSE_TOMBSTONE = "chatvault/tombstone/v1"
PURPOSE_AUDIT = "chatvault/audit-target/v1"
_PURPOSE_CHECK = "chatvault/key-check/v1"


class IdentifierKey:
    """The vault's identifier key; ``hash(purpose, kind, value)`` names what it does."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an identifier key is 32 bytes")
        self._secret = secret

    def _derived(self, purpose: str) -> bytes:
        return hmac.new(self._secret, purpose.encode("ascii"), hashlib.sha256).digest()

    def hash(self, purpose: str, kind: str, value: str) -> str:
        message = kind.encode("utf-8") + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._derived(purpose), message, hashlib.sha256).hexdigest()

    def check_value(self) -> str:
        return self._derived(_PURPOSE_CHECK).hex()[:32]


def _read_key(path: Path) -> IdentifierKey:
    try:
        text = path.read_text(encoding="ascii").strip()
        return IdentifierKey(bytes.fromhex(text))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadKeyFile(f"cannot read the identifier key ({exc})", path=path) from None


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_bytes(32).hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_key(home: Path, conn: sqlite3.Connection) -> IdentifierKey:
    """The identifier key of the vault at ``home``, checked against its store."""
    path = Path(home) / "keys" / KEY_FILE
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (_CHECK_SETTING,)).fetchone()
    if not path.exists():
        if row is not None:
            raise BadKeyFile("identifier key is missing but the store was keyed with one; "
                             "restore it from the vault's backup (without it tombstones "
                             "cannot be matched and erased data could come back)", path=path)
        _create_key(path)
    key = _read_key(path)
    if row is None:
        conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)",
                     (_CHECK_SETTING, key.check_value()))
        row = conn.execute("SELECT value FROM settings WHERE key = ?",
                           (_CHECK_SETTING,)).fetchone()
    if not hmac.compare_digest(row[0], key.check_value()):
        raise BadKeyFile("identifier key does not belong to this store; restore the right "
                         "one from the vault's backup", path=path)
    return key


def normalise(kind: str, value: str, region: str | None = None) -> str:
    """The form an identifier is hashed in; UsageError when it cannot be one."""
    if kind not in KINDS:
        raise UsageError(f"unknown identifier kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "email":
        out = identifiers.normalise_email(value)
    elif kind == "phone":
        out = identifiers.normalise_phone(value, region)
    elif kind == "name":
        out = identifiers.name_key(value)
    elif kind == "phone_unparsed":
        out = "".join(ch for ch in value if ch.isdigit())
    else:
        out = value.strip()
    if not out:
        raise UsageError(f"not a usable {kind}: give it in full (nothing is logged)")
    return out


def conversation_value(source: str, conversation_id: str) -> str:
    return f"{source}/{conversation_id}"


def add(conn: sqlite3.Connection, key: IdentifierKey, kind: str, value: str,
        origin: str | None = None) -> bool:
    """Record a tombstone for an already normalised value; False if it existed."""
    digest = key.hash(PURPOSE_TOMBSTONE, kind, value)
    cur = conn.execute("INSERT OR IGNORE INTO tombstones (kind, hash, created_at, origin) "
                       "VALUES (?, ?, ?, ?)", (kind, digest, timestamps.now_utc(), origin))
    return cur.rowcount == 1


class Filter:
    """The ingest-time check: is this conversation covered by a tombstone?

    Loads the (kind, hash) pairs once per bundle; with no tombstones at all
    it costs nothing per conversation.
    """

    def __init__(self, conn: sqlite3.Connection, key: IdentifierKey, source: str) -> None:
        self.key = key
        self.source = source
        self.hashes = {(k, h) for k, h in conn.execute("SELECT kind, hash FROM tombstones")}

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def covers(self, kind: str, value: str) -> bool:
        return (kind, self.key.hash(PURPOSE_TOMBSTONE, kind, value)) in self.hashes

    def __call__(self, conv: dict[str, Any], people: list[tuple[str, str, Any]],
                 mentions: list[list[tuple[str, str]]]) -> bool:
        if not self.hashes:
            return False
        if self.covers("conversation", conversation_value(self.source,
                                                           conv["conversation_id"])):
            return True
        seen = {(k, v) for k, v, _ in people}
        seen.update(pair for found in mentions for pair in found)
        return any(self.covers(k, v) for k, v in seen)
