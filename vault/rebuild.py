"""Rebuilding a vault's store from its archive and state file, and a digest to compare stores.

The archived bundles are the vault's source of truth; the state file
(:mod:`vault.statefile`) holds what they cannot give back. A rebuild, into a
new home:

1. opens the state file with the vault's key (the new home's, e.g. made by
   ``keys import-paper`` on a fresh machine, or the live home's) and checks
   it was signed by that same key;
2. gives the new home the trust store, ``config.toml`` and identifier key
   it records, then the state tables (tombstones and retention purge
   markers first: ingest needs them); tables that point into the
   conversations are filled only after step 3;
3. re-ingests every archived bundle through the real ingest path
   (:func:`vault.ingest.ingest_staged`), source by source in sequence order,
   so tombstones apply exactly as they did live and what retention purged
   live stays out (:mod:`vault.purges`; counted in ``purged_left_out``),
   whatever legal holds were placed since; then runs retention
   (:func:`vault.retention.apply`): what expired since the state file was
   written is purged, unless a restored legal hold keeps it;
4. compares what was ingested with the bundles the state file says the
   vault held: a bundle the archive lacks is reported as missing;
5. records the rebuild in the new audit log, naming the old log's head, and
   writes the new home's own state file.

:func:`digest` is what ``vault digest`` prints: a SHA-256 over the
canonical (source, conversation id, SHA-256 of the stored record) of every
conversation held, in order, and over the attachments held (hash and size).
Ingest times, bundle rows and the audit log are left out, so a live store
and its rebuild give the same digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault import atomic, audit, canonical, ingest, keys, media, staging, statefile, store
from vault import retention, tombstones
from vault import home as homes
from vault.errors import BadKeyFile, HomeExists, UnsupportedVersion, UsageError
from vault.subjects import open_vault
from vault.trust import Entry, TrustStore

log = logging.getLogger(__name__)

_DIGEST_DOMAIN = b"chatvault/store-digest/v1\x00"


def digest(conn: Any) -> dict[str, Any]:
    """The canonical digest of the conversations (and attachments) a store holds."""
    h = hashlib.sha256(_DIGEST_DOMAIN)
    per_source: dict[str, int] = {}
    for source, cid, record in conn.execute(
            "SELECT source, conversation_id, record FROM conversations "
            "ORDER BY source, conversation_id"):
        sha = hashlib.sha256(record.encode("utf-8")).hexdigest()
        h.update(canonical.dumps(["conversation", source, cid, sha]) + b"\n")
        per_source[source] = per_source.get(source, 0) + 1
    blobs = 0
    for sha, size in conn.execute("SELECT sha256, size FROM attachments ORDER BY sha256"):
        h.update(canonical.dumps(["attachment", sha, size]) + b"\n")
        blobs += 1
    return {"digest": h.hexdigest(), "conversations": sum(per_source.values()),
            "attachments": blobs, "sources": per_source}


def digest_of(home: Path) -> dict[str, Any]:
    """The digest of a vault home's store; never creates one (not a vault: usage error)."""
    from vault import vaultconfig

    path = homes.Home(Path(home)).require().path
    vaultconfig.load(path)  # an exporter's home is refused by its config
    conn = store.open_store(path / store.FILE_NAME)
    try:
        store.check_integrity(conn, path / store.FILE_NAME)
        return digest(conn)
    finally:
        conn.close()


@dataclass
class Rebuilt:
    into: Path
    state_sequence: int
    ingested: int = 0
    duplicate: int = 0
    quarantined: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    tombstoned: int = 0
    purged_left_out: int = 0
    purged: int = 0
    digest: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.quarantined and not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {**{k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()},
                "complete": self.complete}


def rebuild(into: Path, *, home: Path | None = None, archive: Path | None = None,
            state_path: Path | None = None, passphrase_file: Path | None = None) -> Rebuilt:
    """Rebuild a store into ``into`` (see the module docstring)."""
    into = Path(into)
    _refuse_inside(into, home)
    target = homes.Home(into)
    if target.public_key.is_file():
        identity = target.identity(passphrase_file)
    elif home is not None:
        identity = homes.Home(Path(home)).identity(passphrase_file)
    else:
        raise UsageError(f"{into} has no vault key: make it with 'chatvault keys import-paper' "
                         "or give --home of the vault to rebuild")
    archive = Path(archive) if archive else (Path(home) if home else into) / "archive"
    if not archive.is_dir():
        raise UsageError(f"no archive folder at {archive}; give --archive")
    state_path = Path(state_path) if state_path else archive / statefile.FILE_NAME
    if not state_path.is_file():
        raise UsageError(f"no state file at {state_path}: without it tombstones, holds and "
                         "cases are unknown and erased data would come back; give --state")
    state = statefile.read(state_path, identity)

    _prepare(into, identity, home, passphrase_file)
    _restore_files(into, state)
    early, late = _split_tables(into, state)
    _restore_rows(into, state, early)
    report = Rebuilt(into, int(state.meta["sequence"]))
    _ingest_archive(into, archive, report)
    _restore_rows(into, state, late)
    with open_vault(into, check_state=False) as v:
        report.purged = retention.apply(v)["totals"]["purged"]
    got = _ingested_hashes(into)
    report.missing = sorted(f"{s} #{n}" for s, n, sha, _ in state.bundles if sha not in got)
    conn = store.open_store(into / store.FILE_NAME)
    try:
        audit.append(conn, "rebuild", target=f"state:{state.sha256[:16]}", detail={
            "state_sequence": report.state_sequence, "state_sha256": state.sha256,
            "previous_audit_head": state.header.get("audit", {}).get("head"),
            "previous_audit_entries": state.header.get("audit", {}).get("entries"),
            "bundles_held": len(state.bundles), "ingested": report.ingested,
            "quarantined": len(report.quarantined), "missing": len(report.missing)})
        report.digest = digest(conn)
    finally:
        conn.close()
    statefile.write(into, "rebuild", identity, replace_older=True)
    log.info("rebuilt %s: %d bundles ingested, %d quarantined, %d missing, %d conversations",
             into, report.ingested, len(report.quarantined), len(report.missing),
             report.digest["conversations"])
    return report


def _refuse_inside(into: Path, home: Path | None) -> None:
    """A rebuilt home (a secret key, a plaintext store) never goes inside the live one.

    Inside it, it would be backed up with the archive, or rebuilt from
    itself; the live home itself is allowed (keys import-paper, then rebuild).
    """
    if home is None:
        return
    live, target = Path(home).resolve(), into.resolve()
    if target != live and live in target.parents:
        raise UsageError(f"--into {into} is inside the vault's home {home}: a rebuilt home "
                         "holds a secret key and a plaintext store; give a folder outside it "
                         "(e.g. /var/lib/chatvault-rebuilt)")


def _prepare(into: Path, identity: keys.Identity, home: Path | None,
             passphrase_file: Path | None) -> None:
    """A vault home for ``identity`` at ``into`` whose store holds nothing yet."""
    target = homes.Home(into)
    if not target.public_key.is_file():
        homes.create("vault", into, identity.name, identity=identity)
        if home is not None:
            # keep the live key file as it is (a passphrase wrapping stays)
            text = homes.Home(Path(home)).secret_key.read_bytes()
            atomic.write_bytes(target.secret_key, text, 0o600)
        return
    if target.public().fingerprint != identity.fingerprint:
        raise BadKeyFile(f"{into} belongs to key {target.public().fingerprint}, the state "
                         f"file to {identity.fingerprint}")
    conn = store.open_store(into / store.FILE_NAME)
    try:
        used = [t for t in ("conversations", "bundles", "tombstones", "retention_purges")
                if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    finally:
        conn.close()
    if used:
        raise HomeExists(f"{into} already holds {', '.join(used)}; rebuild into a new home")


def _restore_files(into: Path, state: statefile.State) -> None:
    head = state.header
    atomic.write_bytes(into / "config.toml", head["config"].encode("utf-8"), 0o600)
    trust = TrustStore.load(into)
    for fp, item in canonical.loads(head["trust"]).get("keys", {}).items():
        if fp not in trust.entries:
            pub = keys.parse_public(item["public_key"], f"state file trust entry {fp}")
            trust.entries[pub.fingerprint] = Entry(pub, list(item["roles"]), item["added_at"],
                                                   item.get("revoked_at"), item["public_key"])
    trust.save()
    key_hex = head.get("identifiers_key")
    if key_hex:
        path = into / "keys" / tombstones.KEY_FILE
        if path.exists():
            if not hmac.compare_digest(path.read_text("ascii").strip(), key_hex):
                raise BadKeyFile("an identifier key is already there and differs from the "
                                 "state file's", path=path)
        else:
            atomic.write_bytes(path, (key_hex + "\n").encode("ascii"), 0o600)


def _split_tables(into: Path, state: statefile.State) -> tuple[list[str], list[str]]:
    """State tables to fill before ingest, and those pointing into ingested rows."""
    conn = store.open_store(into / store.FILE_NAME)
    try:
        known = set(statefile.state_tables(conn))
        early: list[str] = []
        late: list[str] = []
        for name in state.rows:
            if name not in known:
                raise UnsupportedVersion(f"the state file holds table {name!r}, unknown to "
                                         "this chatvault: written by a newer version; upgrade",
                                         path=state.path)
            parents = {r[2] for r in conn.execute(f'PRAGMA foreign_key_list("{name}")')}
            (late if parents & statefile.DERIVED else early).append(name)
    finally:
        conn.close()
    return early, late


def _restore_rows(into: Path, state: statefile.State, tables: list[str]) -> None:
    conn = store.open_store(into / store.FILE_NAME)
    try:
        with store.transaction(conn):
            # rows of one table may point at another's (cases and their subjects): the
            # foreign keys are checked once everything is in
            conn.execute("PRAGMA defer_foreign_keys = ON")
            for name in tables:
                have = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
                cols = state.columns(name)
                keep = [i for i, c in enumerate(cols) if c in have]
                verb = "INSERT OR REPLACE" if name == "settings" else "INSERT"
                sql = (f'{verb} INTO "{name}" ({", ".join(cols[i] for i in keep)}) '
                       f'VALUES ({", ".join("?" * len(keep))})')
                conn.executemany(sql, ([statefile.uncell(row[i]) for i in keep]
                                       for row in state.rows[name]))
    finally:
        conn.close()


def _archived(archive: Path) -> list[Path]:
    """Archived bundle files, source by source in sequence (name) order; no symlinks."""
    found: list[Path] = []
    limit = staging.max_bundle_bytes(2**62)
    for folder in sorted(archive.iterdir()):
        if folder.is_dir() and not folder.is_symlink():
            found += media.safe_files(folder, ".cvb", limit)
    return found


def _ingest_archive(into: Path, archive: Path, report: Rebuilt) -> None:
    files = _archived(archive)
    staged = staging.stage_files(into, files, limit=staging.max_bundle_bytes(2**62))
    for outcome in ingest.ingest_staged(into, staged, media_label="rebuild",
                                        check_state=False):
        if outcome.status == "ingested":
            report.ingested += 1
            report.tombstoned += outcome.counts.get("tombstoned", 0)
            report.purged_left_out += outcome.counts.get("purged", 0)
        elif outcome.status == "duplicate":
            report.duplicate += 1
        else:
            report.quarantined.append(f"{outcome.bundle_file}: {outcome.code}")


def _ingested_hashes(into: Path) -> set[str]:
    conn = store.open_store(into / store.FILE_NAME)
    try:
        return {r[0] for r in conn.execute("SELECT sha256 FROM bundles")}
    finally:
        conn.close()
