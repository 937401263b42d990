"""The trust store: which other identities this home accepts, and for what.

``H/trust.json`` maps fingerprints to the public key (as its armoured text),
a name, the roles it is trusted for and, once revoked, when. A revoked key
stays listed so that it is refused as *revoked*, not merely unknown.

Roles: ``exporter`` (bundles to ingest), ``vault`` (receipts, restore
bundles, answers), ``restore`` (a recipient for restore bundles),
``requester`` (restore requests), ``dpo`` (DSAR and erasure requests).
Trusting a key again with another role adds the role.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vault import keys, timestamps
from vault.errors import (BadKeyFile, RevokedSigner, UntrustedSigner, UsageError,
                          WrongRole)

TRUST_ROLES = ("exporter", "vault", "restore", "requester", "dpo")
FILE_NAME = "trust.json"


@dataclass
class Entry:
    public: keys.PublicIdentity
    roles: list[str]
    added_at: str
    revoked_at: str | None = None
    text: str = field(default="", repr=False)

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def describe(self) -> dict[str, object]:
        return {"fingerprint": self.fingerprint, "name": self.public.name,
                "key_role": self.public.role, "roles": sorted(self.roles),
                "added_at": self.added_at, "revoked_at": self.revoked_at}


class TrustStore:
    """Loaded from and saved to ``H/trust.json`` (atomically)."""

    def __init__(self, path: Path, entries: dict[str, Entry]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def empty(cls, home: Path) -> "TrustStore":
        return cls(Path(home) / FILE_NAME, {})

    @classmethod
    def load(cls, home: Path) -> "TrustStore":
        path = Path(home) / FILE_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{home} is not a chatvault home (no {FILE_NAME}); "
                             "create one with 'chatvault init'") from None
        except (OSError, ValueError) as exc:
            raise BadKeyFile(f"cannot read trust store: {exc}", path=path) from None
        entries = {}
        for fp, item in raw.get("keys", {}).items():
            pub = keys.parse_public(item["public_key"], f"{path} [{fp}]")
            entries[pub.fingerprint] = Entry(pub, list(item["roles"]), item["added_at"],
                                             item.get("revoked_at"), item["public_key"])
        return cls(path, entries)

    def save(self) -> None:
        data = {"version": 1, "keys": {
            fp: {"public_key": e.text, "roles": sorted(e.roles), "added_at": e.added_at,
                 "revoked_at": e.revoked_at, "name": e.public.name}
            for fp, e in sorted(self.entries.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".trust.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # -- changes -----------------------------------------------------------------

    def trust(self, text: str, role: str, source: str = "public key") -> Entry:
        role = role.strip().lower()  # '--role DPO' is the dpo role
        if role not in TRUST_ROLES:
            raise UsageError(f"unknown role {role!r}; one of {', '.join(TRUST_ROLES)}")
        pub = keys.parse_public(text, source)
        entry = self.entries.get(pub.fingerprint)
        if entry is None:
            entry = Entry(pub, [], timestamps.now_utc(), None, text)
            self.entries[pub.fingerprint] = entry
        if entry.revoked_at:
            raise RevokedSigner(f"key {pub.fingerprint} was revoked at {entry.revoked_at}; "
                                "it cannot be trusted again")
        if role not in entry.roles:
            entry.roles.append(role)
        return entry

    def revoke(self, fingerprint: str) -> Entry:
        fp = keys.normalise_fingerprint(fingerprint)
        entry = self.entries.get(fp)
        if entry is None:
            raise UsageError(f"no trusted key with fingerprint {fp}")
        if not entry.revoked_at:
            entry.revoked_at = timestamps.now_utc()
        return entry

    # -- questions ---------------------------------------------------------------

    def by_sign_key(self, sign_pk: bytes) -> Entry | None:
        for entry in self.entries.values():
            if entry.public.sign_pk == sign_pk:
                return entry
        return None

    def require(self, sign_pk: bytes, role: str, what: str = "signer") -> Entry:
        """The entry for ``sign_pk`` if trusted for ``role``; else a policy refusal."""
        entry = self.by_sign_key(sign_pk)
        if entry is None:
            raise UntrustedSigner(self._unknown(sign_pk, role, what))
        if entry.revoked_at:
            raise RevokedSigner(f"{what} {entry.fingerprint} ({entry.public.name}) was "
                                f"revoked at {entry.revoked_at}")
        if role not in entry.roles:
            raise WrongRole(f"{what} {entry.fingerprint} ({entry.public.name}) is trusted as "
                            f"{', '.join(entry.roles) or 'nothing'}, not as {role}")
        return entry

    def _unknown(self, sign_pk: bytes, role: str, what: str) -> str:
        """Why an unknown signer is refused, naming it by fingerprint where it can be.

        Only the fingerprint the file claims is at hand (see keys.SignerKey);
        one that belongs to a trusted key with another signing key is a forgery
        or a re-keyed home, and saying "trust it" would be the wrong advice.
        """
        claimed = getattr(sign_pk, "claimed", None)
        known = self.entries.get(claimed) if claimed else None
        if known is not None:
            return (f"{what} claims to be {claimed} ({known.public.name}) but is signed with "
                    "another key: forged, or that home was given a new key")
        trust_it = f"'chatvault keys trust PUBFILE --role {role}'"
        if claimed:
            return (f"{what} is not in the trust store (it claims fingerprint {claimed}; "
                    f"compare with 'chatvault keys show' on its home, then {trust_it})")
        return (f"{what} is not in the trust store and names no fingerprint (signing key "
                f"{bytes(sign_pk).hex()[:16]}…); trust its home's key with {trust_it}")

    def with_role(self, role: str) -> list[Entry]:
        return [e for e in self.entries.values() if role in e.roles and not e.revoked_at]


class OwnKeyToo:
    """A trust store that also accepts the home's own key, for the role the key states.

    ``bundle verify`` on an exporter's home, of a bundle that home sealed,
    said "not in the trust store: trust it"; a home need not trust itself.
    """

    def __init__(self, store: TrustStore, own: keys.PublicIdentity) -> None:
        self.store, self.own = store, own

    def require(self, sign_pk: bytes, role: str, what: str = "signer") -> Entry:
        if sign_pk == self.own.sign_pk and role == self.own.role:
            return Entry(self.own, [role], added_at="")
        return self.store.require(sign_pk, role, what)
