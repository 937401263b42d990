"""A home folder: where one side of chatvault keeps everything it owns.

Layout (``H`` is ``--home``, ``$CHATVAULT_HOME`` or ``/var/lib/chatvault``)::

    H/config.toml            commented template written by 'chatvault init'
    H/keys/secret.key        0600, optionally passphrase-wrapped
    H/keys/public.key        mailable, printable, self-signed
    H/trust.json             the trust store (vault.trust)
    exporter:  H/state/      export state (SQLite) and H/outbox/ (bundles
                             kept until every vault acknowledged them);
                             H/chains.json (last sequence and hash per source:
                             a lost or rolled-back state is refused, not reused)
    vault:     H/store.db    the SQLite store; H/archive/ (sealed bundles, the
                             source of truth, and vault-state.cvs, the signed
                             state file); H/quarantine/; H/staging/;
                             H/receipts/ (copies of receipts written);
                             H/reports/ (drill reports); H/keys/identifiers.key
                             (hashes tombstones and audit targets)
    requester: H/state/      requests asked and answers collected (a DPO's
                             home: signs requests, opens answers; no exporter
                             config, no outbox)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vault.errors import HomeExists, NotAHome, UsageError

# Keys and trust bring PyNaCl; a home that is only located ('subject find') needs neither.
if TYPE_CHECKING:
    from vault import keys
    from vault.trust import TrustStore

KINDS = ("exporter", "vault", "requester")
#: longest identity name taken: it is printed in key files, lists and messages
MAX_NAME = 128
_UNPRINTABLE = ("Cc", "Zl", "Zp", "Cs", "Co", "Cn")

_DIRS = {
    "exporter": ["keys", "state", "outbox"],
    "vault": ["keys", "archive", "quarantine", "staging", "receipts", "reports"],
    "requester": ["keys", "state"],
}


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def secret_key(self) -> Path:
        return self.path / "keys" / "secret.key"

    @property
    def public_key(self) -> Path:
        return self.path / "keys" / "public.key"

    def sub(self, name: str) -> Path:
        return self.path / name

    def kind(self) -> str:
        """Which side this home is, from its public key's role."""
        from vault import keys

        return keys.load_public(self.public_key).role

    def require(self) -> "Home":
        if not self.public_key.is_file():
            raise NotAHome(self.path)
        return self

    def identity(self, passphrase_file: Path | None = None) -> keys.Identity:
        from vault import keys

        self.require()
        try:
            text = self.secret_key.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {self.secret_key}: {exc.strerror}") from None
        return keys.parse_secret(text, str(self.secret_key), keys.read_passphrase(passphrase_file))

    def public(self) -> keys.PublicIdentity:
        from vault import keys

        return keys.load_public(self.require().public_key)

    def trust(self) -> TrustStore:
        from vault.trust import TrustStore

        return TrustStore.load(self.require().path)


def create(kind: str, path: Path, name: str, passphrase: bytes | None = None,
           identity: keys.Identity | None = None) -> Home:
    """Create a new home. Refuses to touch a folder that already holds anything."""
    from vault import atomic, keys
    from vault.trust import TrustStore

    if kind not in KINDS:
        raise UsageError(f"unknown home kind {kind!r}; one of {', '.join(KINDS)}")
    check_name(identity.name if identity is not None else name)
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise HomeExists(f"{path} already exists and is not empty; refusing to touch it")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    for sub in _DIRS[kind]:
        (path / sub).mkdir(mode=0o700)

    ident = identity or keys.generate(name, kind)
    home = Home(path)
    keys.write_secret(home.secret_key, keys.secret_key_text(ident, passphrase))
    # whole or not at all, and the owner's only whatever the umask, as every file
    atomic.write_bytes(home.public_key, keys.public_key_text(ident).encode("utf-8"))
    TrustStore.empty(path).save()
    atomic.write_bytes(home.config, _template(kind, name).encode("utf-8"))
    if kind == "vault":
        _create_store(path)
    return home


def check_name(name: str) -> None:
    """Refuse a name the public key's ``Name:`` line would not give back as written.

    That line is read back stripped and line by line: a name with spaces at
    either end or a newline made a home whose own public key failed its
    self-signature check, and the newline also went into config.toml's
    first line. Control and bidirectional-override characters would show
    people another name than the one signed.
    """
    why = _name_problem(name)
    if why:
        raise UsageError(f"--name {name[:80]!r}: not usable as a key's name ({why}); "
                         "use a short name people recognise, e.g. vault-a")


def _name_problem(name: str) -> str | None:
    bad = [c for c in name if _unprintable(c)]
    if bad:
        return f"{', '.join(f'U+{ord(c):04X}' for c in bad[:3])} cannot be printed"
    if not name.strip():
        return "it is empty"
    if name != name.strip():
        return "spaces at either end are not kept"
    if len(name) > MAX_NAME:
        return f"more than {MAX_NAME} characters"
    return None


def _unprintable(char: str) -> bool:
    import unicodedata

    category = unicodedata.category(char)
    # zero-width (non-)joiners are letters' business in several scripts and in emoji
    return category in _UNPRINTABLE or (category == "Cf" and char not in "\u200c\u200d")


def _create_store(path: Path) -> None:
    """Create the empty store when the store module is present."""
    try:
        from vault import store
    except ImportError:
        return
    store.open_store(path / "store.db", create=True).close()


def _template(kind: str, name: str) -> str:
    from importlib import resources

    text = resources.files("vault").joinpath(f"templates/{kind}.toml").read_text("utf-8")
    return text.replace("@NAME@", name)
