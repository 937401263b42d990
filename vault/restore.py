"""Restore bundles: the vault seals conversations for the online side, which opens them.

**create** (on the vault). A :class:`Selection` (a source and time window,
conversation ids, or a subject's e-mail addresses) picks conversations from
the store; those covered by a tombstone (:mod:`vault.tombstones`, the filter
ingest applies) or restricted (Art. 18) are left out and counted. The
records go out exactly as stored (``conversations.record``, the canonical
bytes the exporter sealed) with their attachments as blobs, in the sealed
bundle format (kind ``restore``), signed by the vault and sealed to the
``--to`` keys, which need not be in the trust store.

A restore is a **set** of parts: each part holds one source, so its header
can say which reader format wrote it (``context.format``); parts are
planned before anything is written so that each stays under ``max_bytes``
(the same budget as the exporter's bundles: :func:`exportseal.plaintext_budget`)
and each knows ``part`` and ``parts``. Parts are chained like export
bundles (``sequence`` = part, ``prev_hash`` = the previous part's hash), so
the opener can tell a complete set from a partial one. Each part is sealed
in the vault's own staging folder, copied atomically to the destination
(``--out DIR`` or ``<media>/chatvault/answers/``), and read back from the
device (the page cache dropped first) and hashed before it counts.

Opening, on the online side, is :mod:`vault.restoreopen`.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from vault import (atomic, audit, bundle, canonical, media, records, statecounts, store,
                   timestamps, vaultconfig)
from vault.bundle import BundleWriter
from vault.config import FAT32_MAX
from vault.errors import InputRejected, InvalidRecord, MediaIOError, UsageError
from vault.exportseal import plaintext_budget
from vault.keys import Identity, PublicIdentity
from vault.restoreplan import (Row, Screen, Selection, attach_blobs, candidates, plan,
                              unheld)

log = logging.getLogger(__name__)

KIND = "restore"
DEFAULT_MAX_BYTES = 1024**3
MIN_MAX_BYTES = 256 * 1024
#: SQLite page cache of a restore's store connection, in KiB (see create)
RESTORE_CACHE_KIB = 8192
_END_FRAME = 17
_READ = 1024 * 1024


# -- creating ------------------------------------------------------------------------------

@dataclass
class Created:
    restore_id: str
    parts: list[dict[str, Any]]
    conversations: int
    excluded: dict[str, int]
    redacted: int
    blobs: int
    recipients: list[str]
    redacted_keys: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "redacted_keys"}


class _Chunks(io.RawIOBase):
    """A stored attachment as a readable stream (its zstd chunks, decompressed)."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts, self._pending = parts, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._parts, b"")
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def source_context(home: Path, conn: Any, source: str) -> dict[str, Any]:
    """Format, time zone and phone region of a source, from its newest archived header."""
    row = conn.execute("SELECT archive_path FROM bundles WHERE source = ? AND archive_path "
                       "IS NOT NULL ORDER BY sequence DESC LIMIT 1", (source,)).fetchone()
    if row is None or not (Path(home) / row[0]).is_file():
        return _with_format(conn, source, {})
    try:
        ctx = bundle.inspect(Path(home) / row[0])["meta"].get("context") or {}
    except (OSError, InputRejected):
        return _with_format(conn, source, {})
    kept = {k: ctx[k] for k in ("format", "timezone", "phone_region")
            if isinstance(ctx.get(k), str)}
    return _with_format(conn, source, kept)


def _with_format(conn: Any, source: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """``ctx`` with a ``format``: the archived one, else the one platform all records name."""
    if "format" in ctx:
        return ctx
    found = [r[0] for r in conn.execute("SELECT DISTINCT platform FROM conversations "
                                        "WHERE source = ?", (source,))]
    return {**ctx, "format": found[0]} if len(found) == 1 and found[0] else ctx


def _require_held(conn: Any, selection: Selection) -> None:
    missing = unheld(conn, selection)
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        raise UsageError(f"no conversation {listed} is held"
                         + (f" in source {selection.source!r}" if selection.source else "")
                         + " (give ID or SOURCE/ID as 'subject find' lists them; erased and "
                         "purged ones are gone): nothing was restored")


def create(home: Path, identity: Identity, recipients: Sequence[PublicIdentity],
           selection: Selection, target: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
           purpose: str | None = None, on_media: bool = False) -> Created:
    """Select, seal, place and read back a restore set; recorded in the audit log."""
    selection.check()
    if not MIN_MAX_BYTES <= max_bytes <= FAT32_MAX:
        raise UsageError(f"--max-bytes must be between {MIN_MAX_BYTES} and {FAT32_MAX}")
    if not recipients:
        raise UsageError("give at least one --to public key file")
    home = Path(home)
    conn = store.open_store(home / store.FILE_NAME)
    # each record is read once, in order: the store's 64 MiB lookup cache would only
    # hold memory (peak RSS 153 MiB for 150,000 conversations, 93 with this)
    conn.execute(f"PRAGMA cache_size = -{RESTORE_CACHE_KIB}")
    try:
        statecounts.require_current(home, conn)  # never hand out what was erased since
        vaultconfig.load(home).require_source(conn, selection.source,
                                              "there would be nothing to restore")
        _require_held(conn, selection)
        rows = candidates(conn, selection)
        screen = Screen(home, conn)
        excluded = {"tombstoned": 0, "restricted": 0}
        kept: list[Row] = []
        changed: set[tuple[str, str]] = set()
        for row in rows:
            verdict = screen.check(conn, row)
            if verdict in excluded:
                excluded[verdict] += 1
                continue
            if verdict == "redacted":
                changed.add((row.source, row.conversation_id))
            kept.append(row)
        attach_blobs(conn, kept)
        budget = plaintext_budget(max_bytes, len(recipients)) - _END_FRAME
        parts = plan(kept, budget)
        restore_id = uuid.uuid4().hex
        scratch = home / "staging" / f".restore-{restore_id[:16]}{atomic.TMP_MARK}x"
        scratch.mkdir(parents=True, mode=0o700)
        try:
            done = _seal_all(home, conn, identity, recipients, selection, parts, restore_id,
                             scratch, target, on_media)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        made = Created(restore_id, done, len(kept), excluded, len(changed),
                       sum(p["blobs"] for p in done), [r.fingerprint for r in recipients],
                       changed)
        audit.append(conn, "restore.create", target=f"restore:{restore_id}", purpose=purpose,
                     detail={"selection": selection.describe(), "parts": len(done),
                             "conversations": made.conversations, "excluded": excluded,
                             "redacted": len(changed),
                             "blobs": made.blobs, "recipients": made.recipients,
                             "destination": "media" if on_media else "folder"})
    finally:
        conn.close()
    log.info("restore %s: %d conversations in %d part(s), %s left out", restore_id[:16],
             made.conversations, len(done), excluded)
    return made


def _seal_all(home: Path, conn: Any, identity: Identity, recipients: Sequence[PublicIdentity],
              selection: Selection, parts: list[list[Row]], restore_id: str, scratch: Path,
              target: Path, on_media: bool) -> list[dict[str, Any]]:
    contexts: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    prev = None
    for n, rows in enumerate(parts, 1):
        src = rows[0].source
        ctx = contexts.setdefault(src, source_context(home, conn, src))
        name = f"restore-{restore_id[:16]}-{n:04d}.cvb"
        writer = BundleWriter(scratch / name, identity, recipients, kind=KIND, source=src,
                              sequence=n, prev_hash=prev, context={
                                  **ctx, "restore_id": restore_id, "part": n,
                                  "parts": len(parts), "selection": selection.describe()})
        blobs = 0
        try:
            for row in rows:
                writer.add_record(*_stored(conn, row))
                for sha, size in row.blobs.items():
                    content = io.BufferedReader(_Chunks(store.read_attachment(conn, sha)))
                    blobs += writer.add_blob(sha, content, size)
        except BaseException:
            writer.abort()
            raise
        sealed = writer.finish()
        path = place(sealed.path, target, sealed.sha256)
        prev = sealed.sha256
        done.append({"file": name, "path": str(path), "sha256": sealed.sha256,
                     "size": sealed.size, "source": src, "part": n,
                     "conversations": len(rows), "blobs": blobs})
    return done


def _stored(conn: Any, row: Row) -> tuple[bytes, records.Summary]:
    """A record as it goes out, checked against the hash stored with it at ingest.

    Records were validated when ingested; here the stored SHA-256 proves them
    unchanged, which is cheaper than validating again and catches more.
    """
    if row.data is not None:
        raw = row.data  # a redacted copy, validated when it was made
    else:
        text, sha = conn.execute("SELECT record, content_sha256 FROM conversations "
                                 "WHERE id = ?", (row.id,)).fetchone()
        raw = text.encode("utf-8")
        if records.content_hash(raw) != sha:
            raise InvalidRecord(f"stored record {row.id} of {row.source} does not match its "
                                "hash: the store was damaged or altered (run a drill)")
    conv = canonical.loads(raw)
    msgs = conv["messages"]
    times = [m["at"] for m in msgs]
    return raw, records.Summary(conv["conversation_id"], len(msgs), len(conv["participants"]),
                                sum(len(m.get("attachments") or ()) for m in msgs),
                                min(times, default=None, key=timestamps.order_key),
                                max(times, default=None, key=timestamps.order_key))


def place(sealed: Path, folder: Path, sha256: str) -> Path:
    """Copy a sealed file into ``folder`` atomically, then read it back from the device."""
    import hashlib

    size = sealed.stat().st_size
    media.ensure_space(folder, size)
    target = folder / sealed.name
    with atomic.AtomicFile(target, 0o600) as out, open(sealed, "rb") as src:
        shutil.copyfileobj(src, out, _READ)
    digest = hashlib.sha256()
    try:
        with open(target, "rb") as fh:
            # ask the kernel to forget the cached pages, so the bytes come from the device
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while part := fh.read(_READ):
                digest.update(part)
    except OSError as exc:
        raise atomic.media_error(exc, target) from exc
    if digest.hexdigest() != sha256:
        target.unlink(missing_ok=True)
        raise MediaIOError("read back differs from what was written: the media is failing",
                           path=target)
    return target
