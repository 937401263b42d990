"""Quarantine: refused bundles, kept with their reason, never deleted.

A bundle the vault refuses after copying it (unreadable, forged, untrusted,
a fork, an invalid record...) is moved from staging to
``H/quarantine/<name>.<sha>.cvb`` with ``<...>.cvb.reason.json`` beside it
(file name, SHA-256, error code, the reason in words, exit code, source and
sequence when the header could be verified, media label and serial, time),
and recorded in the ``quarantine`` table, where ``vault status`` finds it.

A refused copy is kept **whole** up to :data:`WHOLE_MAX` bytes, while the
quarantine folder's kept copies stay under :data:`TOTAL_MAX`; beyond
either, only its first :data:`HEAD_BYTES` are kept (``<...>.head``, the
reason file says so, with the whole file's hash and size). A stick must not
be able to fill the vault's disk: a file that declares a large size, fails
its signature and differs by one byte each time would otherwise be kept in
full again and again. Nothing is lost: the file stays on the stick and the
exporter keeps its own copy until a vault acknowledges it; a head kept
this way is not a copy to judge again, so the next insertion reads the
file from the stick.

A file **refused on its first bytes** (:mod:`vault.staging`: not a bundle,
or not one this vault could accept, judged on its fixed prefix and size) is
never copied: only its first :data:`~vault.staging.EVIDENCE_BYTES` are kept,
as ``H/quarantine/<name>.<id>.head``, with the same ``.reason.json``. Its
row's ``sha256`` is the file's sample identity (the file was not read in
full, so there is no hash of it), and so is the receipt's
``bundle_sha256``. The file stays on the stick: the vault never deletes
what it did not ingest. Seen again, it is recognised by that identity,
not read again, and only its ``last_seen_at`` moves.

An entry is **resolved** by itself when a good copy of the same file is
ingested (a corrupted copy on one stick, a good one on the next). Refusals
of the maker (an untrusted, revoked or wrong-role signer, a bundle sealed
for another vault) resolve only when those very bytes are let in; forks
never resolve by themselves: two different bundles claim one place in a
source's chain, and a person must find out why. A person settles any entry
with ``chatvault vault resolve FILE --note ...`` (:func:`resolve_by_hand`,
recorded in the audit log); the kept files stay.

Receipts for refused files: the vault removes a ``quarantined`` receipt it
signed itself once the file it speaks of is gone from the stick's outbox
(:func:`stale_receipts`, at the next insertion that brings any bundle).
Whoever removed the file has dealt with it: the
exporter reads every receipt before it removes a damaged copy, and a file a
person deleted is written again by the exporter if it was one of its
bundles. Receipts saying ``ingested`` or ``duplicate`` are the exporter's
acknowledgements and are never removed by the vault.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault import atomic, audit, canonical, chain, media, receipts, signed, store, timestamps
from vault.bundle import layout
from vault.errors import (EXIT_POLICY, EXIT_REJECTED, ChatvaultError, ForkDetected,
                          InputRejected, InvalidRecord, MediaMissing, NotARecipient, Oversize,
                          PolicyRefused, RevokedSigner, UntrustedSigner, WrongRole)

if TYPE_CHECKING:
    from vault.staging import Staged

#: refusals a good file of the same name does not settle (see resolve_by)
NOT_DAMAGE = (ForkDetected.code, UntrustedSigner.code, RevokedSigner.code, WrongRole.code,
              NotARecipient.code)

log = logging.getLogger(__name__)

FOLDER = "quarantine"
EVIDENCE = ".head"
#: a refused copy larger than this is kept as its first HEAD_BYTES only
WHOLE_MAX = 64 * 1024 * 1024
#: kept whole copies stop here; later ones are kept as heads
TOTAL_MAX = 1024 * 1024 * 1024
HEAD_BYTES = 1024 * 1024
_IDENTITY_DOMAIN = b"chatvault/media-file-sample/v1\x00"
_POLICY_CODES = {cls.code for cls in PolicyRefused.__subclasses__()} | {PolicyRefused.code}


@dataclass(frozen=True)
class Verdict:
    """Why a bundle was refused, as its outcome and receipt say it."""

    code: str
    reason: str
    exit_code: int
    meta: dict[str, Any] | None = None
    recognised: bool = False  # refused before; recognised without copying it again


def exit_code_of(code: str) -> int:
    """The exit code a recorded refusal stands for (policy 4, rejected input 3)."""
    return EXIT_POLICY if code in _POLICY_CODES else EXIT_REJECTED


def refuse(home: Path, conn: Any, item: Staged, exc: ChatvaultError,
           meta: dict[str, Any] | None, media_id: tuple[str | None, str | None]) -> Verdict:
    """Keep a staged bundle the vault refused (:func:`keep`)."""
    kept = keep(home, conn, item, exc, meta or {}, media_id)
    # Record-level reasons can quote ids from the data: the log gets the code only.
    shown = exc.code if isinstance(exc, InvalidRecord) else exc.detail
    log.warning("quarantined %s: %s (kept as %s)", item.bundle_file, shown, kept.name)
    return Verdict(exc.code, exc.detail, exc.exit_code, meta or None)


def refuse_unread(home: Path, conn: Any, item: Staged,
                  media_id: tuple[str | None, str | None]) -> Verdict:
    """A file refused on its first bytes: recorded once, recognised after that."""
    row = recorded(conn, item.sha256)
    if row is not None:
        seen_again(conn, item.sha256, media_id)
        log.info("%s: refused before (%s), recognised without reading it", item.bundle_file,
                 row[0])
        return Verdict(row[0], row[1], exit_code_of(row[0]), recognised=True)
    assert item.refusal is not None
    exc = item.as_known(item.refusal)
    kept = keep_unread(home, conn, item, media_id)
    log.warning("quarantined %s: %s (%d bytes, not copied; its first bytes are kept as %s)",
                item.bundle_file, exc.detail, item.size, kept.name)
    return Verdict(exc.code, exc.detail, exc.exit_code)


def handled_elsewhere(conn: Any, item: Staged) -> Verdict:
    """A staged copy another ingest run (waited for) has already quarantined."""
    row = recorded(conn, item.sha256)
    if row is None:
        raise MediaMissing("no staged copy left to ingest (taken by another run, or no "
                           "longer held since it was staged); insert the media again",
                           path=item.shown)
    code, reason, src, seq = row
    return Verdict(code, reason, exit_code_of(code),
                   {"source": src, "sequence": seq} if src else None)


def first_bytes_verdict(head: bytes, name: str, size: int, max_plaintext: int,
                        limit: int) -> ChatvaultError | None:
    """Why a file of ``size`` bytes starting with ``head`` cannot be an acceptable bundle.

    Not a bundle at all says so first; then a size above any bundle this
    vault accepts; then whatever the fixed header gets wrong.
    """
    if size > limit and head.startswith(layout.MAGIC):
        return Oversize(f"{size} bytes: larger than any bundle this vault accepts "
                        f"({limit} bytes, from limits.max_plaintext_bytes)", path=name)
    try:
        layout.parse_prefix(head, name, max_plaintext=max_plaintext, file_size=size)
    except InputRejected as exc:
        return exc
    return None


def identity(name: str, size: int, head: bytes, tail: bytes) -> str:
    """The sample identity of a file refused on its first bytes (:mod:`vault.staging`)."""
    digest = hashlib.sha256(_IDENTITY_DOMAIN)
    digest.update(name.encode("utf-8") + b"\x00" + size.to_bytes(8, "big"))
    digest.update(head)
    digest.update(tail)
    return digest.hexdigest()


def _stem(item: Staged) -> str:
    name = item.bundle_file
    return name[:-4] if name.endswith(".cvb") else name


def _info(item: Staged, exc: ChatvaultError, meta: dict[str, Any],
          media_id: tuple[str | None, str | None], now: str) -> dict[str, Any]:
    return {"bundle_file": item.bundle_file, "sha256": item.sha256, "code": exc.code,
            "reason": exc.detail, "exit_code": exc.exit_code, "at": now,
            "source": meta.get("source"), "sequence": meta.get("sequence"),
            "media_label": media_id[0], "media_serial": media_id[1], "from": item.origin}


def keep(home: Path, conn: Any, item: Staged, exc: ChatvaultError,
         meta: dict[str, Any], media_id: tuple[str | None, str | None]) -> Path:
    """Move the staged copy into quarantine, write its reason, record it; returns its path."""
    from vault import staging

    folder = Path(home) / FOLDER
    folder.mkdir(exist_ok=True, mode=0o700)
    kept = folder / f"{_stem(item)}.{item.sha256[:12]}.cvb"
    now = timestamps.now_utc()
    info = _info(item, exc, meta, media_id, now)
    try:
        if kept.exists():
            staging.remove(item)  # the very same bytes are already kept
        elif item.size > WHOLE_MAX or _kept_bytes(folder) + item.size > TOTAL_MAX:
            kept = kept.with_suffix(EVIDENCE)
            info.update(_keep_head(item, kept))
            staging.remove(item)
        else:
            os.replace(item.path, kept)
            atomic.fsync_dir(folder)
            staging.remove(item)  # its sidecar; the copy itself has moved
        atomic.write_bytes(kept.with_name(kept.name + ".reason.json"),
                           canonical.dumps(info) + b"\n", 0o600)
    except OSError as err:
        raise atomic.media_error(err, kept) from err
    _record(home, conn, item, exc, meta, media_id, kept, now)
    return kept


def _kept_bytes(folder: Path) -> int:
    """Bytes of the whole copies kept in ``folder`` (heads are small and not counted)."""
    total = 0
    for entry in os.scandir(folder):
        if entry.name.endswith(".cvb") and entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def _keep_head(item: Staged, kept: Path) -> dict[str, Any]:
    """Keep the first HEAD_BYTES of a refused copy; what the reason file says of it."""
    with open(item.path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    atomic.write_bytes(kept, head, 0o600)
    log.warning("%s: refused copy of %d bytes kept as its first %d (quarantine keeps whole "
                "copies up to %d bytes, %d in all); the file itself stays on the medium",
                item.bundle_file, item.size, len(head), WHOLE_MAX, TOTAL_MAX)
    return {"size": item.size,
            "kept": f"the first {len(head)} bytes of {item.size}; the whole file was read "
                    "and its sha256 is the one above; it stays on the medium it came from"}


def keep_unread(home: Path, conn: Any, item: Staged,
                media_id: tuple[str | None, str | None]) -> Path:
    """Record a file refused on its first bytes: evidence, reason, row (nothing copied)."""
    assert item.refusal is not None
    folder = Path(home) / FOLDER
    folder.mkdir(exist_ok=True, mode=0o700)
    kept = folder / f"{_stem(item)}.{item.sha256[:12]}{EVIDENCE}"
    now = timestamps.now_utc()
    info = _info(item, item.refusal, {}, media_id, now)
    info.update({"sha256": None, "sample_identity": item.sha256, "size": item.size,
                 "kept": f"the first {len(item.evidence)} bytes; the file was judged on "
                         "its first bytes and size and was not read further"})
    try:
        atomic.write_bytes(kept, item.evidence, 0o600)
        atomic.write_bytes(kept.with_name(kept.name + ".reason.json"),
                           canonical.dumps(info) + b"\n", 0o600)
    except OSError as err:
        raise atomic.media_error(err, kept) from err
    _record(home, conn, item, item.refusal, {}, media_id, kept, now)
    return kept


def _record(home: Path, conn: Any, item: Staged, exc: ChatvaultError, meta: dict[str, Any],
            media_id: tuple[str | None, str | None], kept: Path, now: str) -> None:
    with store.transaction(conn):
        conn.execute(
            "INSERT INTO quarantine (file, sha256, code, reason, source, sequence, signer, "
            "created_at, path, media_label, media_serial, at, last_seen_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (sha256) DO UPDATE SET "
            "code = excluded.code, reason = excluded.reason, last_seen_at = excluded.at, "
            "resolved_at = NULL, resolution = NULL",
            (item.bundle_file, item.sha256, exc.code, exc.detail, meta.get("source"),
             meta.get("sequence"), meta.get("signer"), meta.get("created_at"),
             str(kept.relative_to(home)), media_id[0], media_id[1], now, now))
        if exc.code != ForkDetected.code and chain.bundle_row(conn, "file = ?",
                                                              (item.bundle_file,)):
            conn.execute("UPDATE quarantine SET resolved_at = ?, resolution = ? "
                         "WHERE sha256 = ?", (now, "a good copy is already ingested",
                                              item.sha256))
        audit.append(conn, "quarantine", target=f"file:{item.bundle_file}",
                     detail={"sha256": item.sha256, "code": exc.code})


def seen_again(conn: Any, sha256: str, media_id: tuple[str | None, str | None]) -> None:
    """A file refused before was found again (recognised without reading it)."""
    with store.transaction(conn):
        conn.execute("UPDATE quarantine SET last_seen_at = ?, "
                     "media_label = coalesce(?, media_label), "
                     "media_serial = coalesce(?, media_serial) WHERE sha256 = ?",
                     (timestamps.now_utc(), media_id[0], media_id[1], sha256))


def kept_copies(home: Path, conn: Any) -> dict[str, tuple[int, Path]]:
    """SHA-256 -> (size, path) of every bundle copy kept in quarantine."""
    out = {}
    for sha, rel in conn.execute("SELECT sha256, path FROM quarantine WHERE path LIKE '%.cvb'"):
        path = Path(home) / rel
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not path.is_symlink() and path.is_file():
            out[sha] = (st.st_size, path)
    return out


def resolve_by(conn: Any, bundle_file: str, sha256: str, where: str) -> None:
    """A good copy of ``bundle_file`` was ingested (inside that transaction).

    It settles what damage explains: a copy refused as broken. A refusal of
    who made the file (:data:`NOT_DAMAGE`: an unknown, revoked or wrong-role
    signer, sealed for another vault, a fork) is settled only by these very
    bytes being let in (the signer trusted since); a good file of the same
    name says nothing about where the refused one came from.
    """
    marks = ",".join("?" * len(NOT_DAMAGE))
    conn.execute("UPDATE quarantine SET resolved_at = ?, resolution = ? WHERE file = ? "
                 f"AND resolved_at IS NULL AND (sha256 = ? OR code NOT IN ({marks}))",
                 (timestamps.now_utc(), f"a good copy was ingested as {where}", bundle_file,
                  sha256, *NOT_DAMAGE))


def resolve_by_hand(home: Path, bundle_file: str, note: str | None) -> list[dict[str, Any]]:
    """Settle every open entry of ``bundle_file`` (a person dealt with it); returns them."""
    from vault.errors import UsageError

    name = Path(bundle_file).name
    conn = store.open_store(Path(home) / store.FILE_NAME)
    try:
        with store.transaction(conn):
            rows = conn.execute("SELECT file, sha256, code, reason, at, path FROM quarantine "
                                "WHERE file = ? AND resolved_at IS NULL ORDER BY at",
                                (name,)).fetchall()
            if not rows:
                raise UsageError(f"{name}: nothing in quarantine waits to be resolved "
                                 "('chatvault vault status' lists what does)")
            said = f"by hand: {note}" if note else "by hand"
            conn.execute("UPDATE quarantine SET resolved_at = ?, resolution = ? "
                         "WHERE file = ? AND resolved_at IS NULL",
                         (timestamps.now_utc(), said, name))
            audit.append(conn, "quarantine-resolve", target=f"file:{name}",
                         detail={"entries": len(rows), "codes": sorted({r[2] for r in rows})})
    finally:
        conn.close()
    log.info("quarantine of %s resolved by hand (%d entries)", name, len(rows))
    keys = ("file", "sha256", "code", "reason", "at", "kept")
    return [dict(zip(keys, row)) for row in rows]


def recorded(conn: Any, sha256: str) -> tuple[str, str, str | None, int | None] | None:
    """(code, reason, source, sequence) of a quarantined bundle, or None."""
    row = conn.execute("SELECT code, reason, source, sequence FROM quarantine "
                       "WHERE sha256 = ?", (sha256,)).fetchone()
    return tuple(row) if row else None  # type: ignore[return-value]


# -- receipts on the stick ------------------------------------------------------------

def stale_receipts(media_root: Path, sign_pk: bytes) -> list[Path]:
    """This vault's ``quarantined`` receipts on the stick whose file is gone (module doc)."""
    outbox = media.folder(Path(media_root), media.OUTBOX)
    out = []
    for path in receipts.on_media(Path(media_root)):
        try:
            doc = signed.load(path)
        except ChatvaultError:
            continue
        body = doc["body"]
        name = body.get("bundle_file")
        if (body.get("kind") != "receipt" or body.get("status") != "quarantined"
                or not isinstance(name, str) or "/" in name or name in (".", "..")):
            continue
        if not os.path.lexists(outbox / name) and receipts.signed_by(doc, sign_pk):
            out.append(path)
    return out
