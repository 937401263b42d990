"""The vault's identifier key: keyed hashes of identifiers, one derived key per purpose.

``H/keys/identifiers.key`` holds 32 random bytes (hex, 0600),
made on first use. Keys for each purpose are derived from it by HMAC with
the purpose's name, so a tombstone hash and an audit-log target hash of the
same identifier differ and cannot be joined without the key. The store
keeps a check value of the key (``settings.identifier_key_check``): a
missing or replaced key file is refused instead of silently matching
nothing. What this does not protect against: anyone holding both the
store and the key file can test guesses of identifiers.

Purposes in use: tombstones (:mod:`vault.tombstones`), audit-log targets,
legal holds, Art. 18 restrictions, the pseudonyms erasure puts in ids, and
retention purge markers (:mod:`vault.purges`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path

from vault.errors import BadKeyFile

KEY_FILE = "identifiers.key"
_CHECK_SETTING = "identifier_key_check"
PURPOSE_TOMBSTONE = "chatvault/tombstone/v1"
PURPOSE_AUDIT = "chatvault/audit-target/v1"
PURPOSE_HOLD = "chatvault/hold/v1"
PURPOSE_RESTRICTION = "chatvault/restriction/v1"
PURPOSE_PSEUDONYM = "chatvault/erased-id/v1"
PURPOSE_RETENTION = "chatvault/retention-purge/v1"
_PURPOSE_CHECK = "chatvault/key-check/v1"


class IdentifierKey:
    """The vault's identifier key; ``hash(purpose, kind, value)`` names what it does."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an identifier key is 32 bytes")
        self._secret = secret
        self._purposes: dict[str, bytes] = {}

    def _derived(self, purpose: str) -> bytes:
        key = self._purposes.get(purpose)
        if key is None:
            key = hmac.new(self._secret, purpose.encode("ascii"), hashlib.sha256).digest()
            self._purposes[purpose] = key
        return key

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
    import secrets

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
