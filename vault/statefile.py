"""The vault's state file: what the archive cannot give back, sealed beside it.

The archived bundles give back every conversation, but not what the vault
decided about them. The state file holds that:

* every store table that ingest does not derive from bundles (tombstones,
  settings with the identifier key's check value, legal holds, and whatever
  the GDPR operations add: DSAR cases, restrictions, retention stamps);
  tables are found by exclusion (:data:`DERIVED`), so a new table of state
  is carried without touching this module;
* the identifier key (``H/keys/identifiers.key``) that hashes tombstones;
* the trust store (the exporters' keys are needed to verify the archive),
  ``config.toml`` (retention, regions) and the vault's public key;
* the list of bundles the vault holds (so a rebuild can tell a lost
  archive file) and the audit log's head (the rebuilt log names it).

It is written to ``H/archive/vault-state.cvs`` in the sealed bundle format
(kind ``state``), signed by the vault and sealed to the vault's own key:
archive + state file + the vault's key (its paper backup) are a complete
backup. It is rewritten atomically after every committed change
(:mod:`vault.statehook`) and after ingest runs; writers are serialised by a
lock file, and a snapshot equal to the one on disk is not written again
(the header carries a digest of the content; the digest covers a 32-byte
random key, so it cannot be used to test guesses of what is inside).
Each write takes the next ``sequence`` and names the previous file's hash.

What it does not protect: a state file older than the newest change (the
vault lost between a change and the write) loses that change.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vault import audit, bundle, canonical, statecounts, store, timestamps, tombstones
from vault.bundle import BundleWriter, Record
from vault.errors import (BadDocument, BadPassphrase, InputRejected, MalformedHeader,
                          PassphraseNeeded, UntrustedSigner)
from vault.home import Home
from vault.keys import Identity, PublicIdentity
from vault.records import Summary

log = logging.getLogger(__name__)

FILE_NAME = "vault-state.cvs"
KIND = "state"
SOURCE = "vault-state"
#: tables ingest rebuilds from the archive (or that record the store itself)
DERIVED = frozenset({
    "migrations", "sources", "bundles", "quarantine", "conversations", "participants",
    "messages", "identifiers", "mentions", "attachments", "attachment_chunks",
    "attachment_refs", "audit_log"})
#: state tables whose rows are never deleted: a state file is never replaced by fewer
GROW_ONLY = tuple(t for t in statecounts.COUNTED if t != "bundles")
_ROWS_PER_RECORD = 5000
_SUMMARY = Summary("state", 0, 0, 0, None, None)


class OwnKey:
    """A trust check that accepts one key only: the vault's own, for any role."""

    def __init__(self, public: PublicIdentity) -> None:
        self.public = public
        self.fingerprint = public.fingerprint

    def require(self, sign_pk: bytes, role: str, what: str = "signer") -> "OwnKey":
        if sign_pk != self.public.sign_pk:
            claimed = getattr(sign_pk, "claimed", None)
            raise UntrustedSigner(f"{what} is not signed by this vault's own key "
                                  f"{self.fingerprint}"
                                  + (f" (it claims {claimed})" if claimed else ""))
        return self


def path_of(home: Path) -> Path:
    return statecounts.path_of(home)


# -- what goes in ----------------------------------------------------------------------------

def state_tables(conn: sqlite3.Connection) -> list[str]:
    """Store tables holding state ingest cannot rebuild (virtual tables excluded)."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                        "ORDER BY name").fetchall()
    virtual = [n for n, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
    return [n for n, _ in rows if n not in DERIVED and not n.startswith("sqlite_")
            and n not in virtual and not any(n.startswith(v + "_") for v in virtual)]


def _cell(value: Any) -> Any:
    return {"b64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def uncell(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


def snapshot(home: Path, conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything the state file holds, read in one transaction."""
    home = Path(home)
    key_file = home / "keys" / tombstones.KEY_FILE
    conn.execute("BEGIN")
    try:
        tables = {}
        for name in state_tables(conn):
            cur = conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
            tables[name] = {"columns": [d[0] for d in cur.description],
                            "rows": [[_cell(v) for v in row] for row in cur]}
        held = [list(r) for r in conn.execute(
            "SELECT source, sequence, sha256, archive_path FROM bundles ORDER BY source, "
            "sequence")]
        head = {"head": audit.head(conn),
                "entries": conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]}
    finally:
        conn.execute("COMMIT")
    return {
        "tables": tables, "bundles": held, "audit": head,
        "identifiers_key": key_file.read_text("ascii").strip() if key_file.exists() else None,
        "trust": (home / "trust.json").read_text("utf-8"),
        "config": (home / "config.toml").read_text("utf-8"),
        "public_key": (home / "keys" / "public.key").read_text("utf-8"),
    }


def content_digest(snap: dict[str, Any]) -> str:
    """What decides whether the file must be written again (the audit head does not)."""
    return canonical.digest({k: v for k, v in snap.items() if k != "audit"})


# -- writing -----------------------------------------------------------------------------------

@contextmanager
def _locked(home: Path) -> Iterator[None]:
    lock = Path(home) / "archive" / ".vault-state.lock"
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(lock, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _previous(path: Path) -> tuple[int, str | None, str | None]:
    """(sequence, file hash, content digest) of the state file on disk, if readable."""
    if not path.is_file():
        return 0, None, None
    try:
        meta = bundle.inspect(path)["meta"]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        return int(meta["sequence"]), sha, (meta.get("context") or {}).get("digest")
    except (OSError, InputRejected, KeyError, TypeError, ValueError):
        return 0, None, None


def _kept(snap: dict[str, Any]) -> dict[str, int]:
    """How many rows of what only ever grows the snapshot holds (bundles held too)."""
    kept = {name: len(snap["tables"].get(name, {}).get("rows", [])) for name in GROW_ONLY}
    return {**kept, "bundles": len(snap["bundles"])}


def _refuse_forgetting(path: Path, snap: dict[str, Any]) -> None:
    """Refuse to replace a state file that remembers more erasures or purges than the store.

    Tombstones, purge markers and held bundles are never deleted, so a store
    holding fewer than the state file on disk is older than it or was
    tampered with: saving it would forget erasures, and the next rebuild
    would bring the people back. The counts are in the signed header.
    """
    lost = statecounts.behind(path, _kept(snap))
    if lost:
        raise statecounts.regression(path, lost, "Nothing was written.")


def write(home: Path, reason: str, identity: Identity | None = None, *,
          replace_older: bool = False) -> Path:
    """Write the state file of the vault at ``home`` when its content changed.

    ``replace_older`` (a rebuild only) replaces a state file that remembers
    more than the store: the rebuild read it and reports what it could not
    bring back.
    """
    home = Path(home)
    path = path_of(home)
    with _locked(home):
        conn = store.open_store(home / store.FILE_NAME)
        try:
            snap = snapshot(home, conn)
        finally:
            conn.close()
        digest = content_digest(snap)
        sequence, prev_sha, prev_digest = _previous(path)
        if prev_digest == digest and _damage(home, path) is None:
            return path  # a damaged copy with the same content is written again
        if not replace_older:
            _refuse_forgetting(path, snap)
        try:
            ident = identity or Home(home).identity()
        except (BadPassphrase, PassphraseNeeded):
            # the change itself is committed; vault status reports the stale file
            log.error("state file NOT written after %s: the vault key is passphrase-protected "
                      "and no passphrase was given; run 'chatvault vault state-save "
                      "--passphrase-file FILE'", reason)
            return path
        writer = BundleWriter(path, ident, [ident.public()], kind=KIND, source=SOURCE,
                              sequence=sequence + 1, prev_hash=prev_sha,
                              context={"digest": digest, "reason": reason[:64],
                                       "kept": _kept(snap)})
        try:
            for rec in _records(snap, reason):
                writer.add_record(canonical.dumps(rec), _SUMMARY)
        except BaseException:
            writer.abort()
            raise
        sealed = writer.finish()
    log.info("state file written after %s: sequence %d, %d tombstone(s), %d bytes", reason,
             sequence + 1, len(snap["tables"].get("tombstones", {}).get("rows", [])),
             sealed.size)
    return path


def _records(snap: dict[str, Any], reason: str) -> Iterator[dict[str, Any]]:
    head = {k: v for k, v in snap.items() if k not in ("tables", "bundles")}
    head.update(part="header", written_at=timestamps.now_utc(), reason=reason,
                tables={n: t["columns"] for n, t in snap["tables"].items()})
    yield head
    for i in range(0, len(snap["bundles"]), _ROWS_PER_RECORD):
        yield {"part": "bundles", "rows": snap["bundles"][i:i + _ROWS_PER_RECORD]}
    for name, table in snap["tables"].items():
        for i in range(0, len(table["rows"]), _ROWS_PER_RECORD):
            yield {"part": "rows", "table": name,
                   "rows": table["rows"][i:i + _ROWS_PER_RECORD]}


# -- reading ------------------------------------------------------------------------------------

@dataclass
class State:
    """A verified, decrypted state file."""

    path: Path
    sha256: str
    meta: dict[str, Any]
    header: dict[str, Any]
    bundles: list[list[Any]] = field(default_factory=list)
    rows: dict[str, list[list[Any]]] = field(default_factory=dict)

    def columns(self, table: str) -> list[str]:
        return list(self.header["tables"][table])


def read(path: Path, identity: Identity, trust: Any = None) -> State:
    """Verify (the vault's own key, or ``trust`` for role ``vault``) and decrypt."""
    check = trust or OwnKey(identity.public())
    with bundle.Bundle(path) as b:
        b.check_signer(check, "vault")
        sha = b.verify_signature()
        assert b.meta is not None
        if b.meta["kind"] != KIND:
            raise MalformedHeader(f"is a {b.meta['kind']!r} bundle, not a state file",
                                  path=path)
        state: State | None = None
        for item in b.items(identity):
            if not isinstance(item, Record):
                raise BadDocument("a state file holds no attachments", path=path)
            rec = canonical.loads(item.data)
            if state is None:
                if not isinstance(rec, dict) or rec.get("part") != "header":
                    raise BadDocument("state file does not start with its header", path=path)
                state = State(Path(path), sha, b.meta, rec,
                              rows={n: [] for n in rec.get("tables", {})})
            elif rec.get("part") == "bundles":
                state.bundles += rec["rows"]
            elif rec.get("part") == "rows" and rec.get("table") in state.rows:
                state.rows[rec["table"]] += rec["rows"]
            else:
                raise BadDocument("state file holds an unknown record", path=path)
    if state is None:
        raise BadDocument("state file is empty", path=path)
    return state


def describe(home: Path) -> dict[str, Any]:
    """Where the state file is, how far it goes, and whether it is current."""
    path = path_of(home)
    sequence, _, digest = _previous(path)
    info: dict[str, Any] = {"path": str(path), "exists": path.is_file(),
                            "sequence": sequence or None, "current": False}
    if not info["exists"]:
        return info
    info["problem"] = _damage(home, path)
    conn = store.open_store(Path(home) / store.FILE_NAME)
    try:
        info["current"] = (info["problem"] is None
                           and digest == content_digest(snapshot(home, conn)))
    finally:
        conn.close()
    if info["problem"] is None:
        info["written_at"] = bundle.inspect(path)["meta"].get("created_at")
    return info


def _damage(home: Path, path: Path) -> str | None:
    """Why the state file does not verify (signature by the vault's own key), or None.

    Only the signature is checked (no key needed to decrypt): enough to see
    a damaged or replaced file long before a rebuild needs it.
    """
    try:
        with bundle.Bundle(path) as b:
            b.check_signer(OwnKey(Home(home).public()), "vault")
            b.verify_signature()
    except (InputRejected, UntrustedSigner) as exc:
        return exc.detail
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
