"""Staging: bundles copied from the media to ``H/staging/`` while hashing.

Nothing is verified or opened on the media itself: every bundle is first
copied onto the vault's own disk, and ingest works on that private copy
(the reader hashes a file twice; a stick's content could change in between).

* **Safe**: files are listed with :func:`vault.media.safe_files` (no
  symlinks, no odd names, no special files) and opened with
  ``O_NOFOLLOW``; at most :data:`MAX_FILES` per run, and never more than
  the listing said (a file that grows while copied is refused).
* **Judged on its first bytes before any copy**: a file whose fixed prefix
  (:func:`vault.bundle.layout.parse_prefix`) and size cannot be a bundle
  this vault accepts (bad magic, unsupported version, malformed fields, a
  size other than the header declares, above ``limits.max_plaintext_bytes``
  plus the format's overhead) is **refused unread**: only its first and last
  :data:`SAMPLE_BYTES` are read, and it is named by their SHA-256 with its
  name and size (:func:`vault.quarantine.identity`; not its mtime, which
  cannot change the verdict), so a later insertion recognises it unread.
  :mod:`vault.quarantine` keeps the first :data:`EVIDENCE_BYTES`.
* **Bytes the vault has are not copied again**: a file of the size of a
  bundle the vault holds or keeps in quarantine is hashed on the media, in
  full, writing nothing. The SHA-256 of a held bundle makes it ``held``
  (ingest reports a duplicate); that of a quarantined copy stages that copy
  by a hard link (judged again: trust may have changed). Only the full
  hash decides, never a name or a date, so a file whose bytes could differ
  from what the vault has is always copied (at the price of a second read).
* **Atomic and resumable**: a copy is written under a temporary name,
  fsynced and renamed to ``<sha256[:16]>.<file name>``; a ``.staged.json``
  beside it records name, size, hash and where it came from. A copy cut
  short by a pulled stick is only ever a temporary file, discarded on the
  next run; one already staged (same name, size and hash) is not copied
  again.
* **Loses nothing**: when the media disappears mid-run, a MediaError
  (exit 5) is raised carrying in ``.staged`` every bundle fully staged so
  far; they stay in staging (:func:`pending`) until ingested.
* **Stoppable between files**: with ``stop`` (the daemon's SIGTERM), the
  file in hand is finished and no further file is opened; what was staged
  is returned, the rest stays on the media.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from vault import (atomic, canonical, chain, filelock, media, quarantine, store,
                   timestamps)
from vault.bundle import layout
from vault.errors import ChatvaultError, InputRejected, MediaError, MediaMissing

log = logging.getLogger(__name__)

SUFFIX = ".cvb"
SIDECAR = ".staged.json"
MAX_FILES = 10_000
#: bytes read at the start and at the end of a file to judge and recognise it
SAMPLE_BYTES = 64 * 1024
#: bytes of a file refused unread that are kept as evidence
EVIDENCE_BYTES = 4096
_READ = 1024 * 1024

COPY, HELD, REFUSED = "copy", "held", "refused"


@dataclass(frozen=True)
class Staged:
    """One bundle file taken from the media (or the command line), and how.

    ``kind`` is ``copy`` (a private copy at ``path`` in staging), ``held``
    (the vault holds these very bytes: nothing copied, ``path`` is the
    original) or ``refused`` (refused on its first bytes: nothing copied,
    ``sha256`` is the file's sample identity, ``refusal`` the verdict).
    ``origin`` is the file as the operator knows it: its path on the media
    or on the command line.
    """

    bundle_file: str
    sha256: str
    path: Path
    size: int
    origin: str | None = field(default=None, compare=False)
    kind: str = COPY
    refusal: ChatvaultError | None = field(default=None, compare=False, repr=False)
    evidence: bytes = field(default=b"", compare=False, repr=False)

    @property
    def shown(self) -> str:
        """The name messages use: the path given, or the name on the media."""
        return self.origin or self.bundle_file

    def as_known(self, exc: ChatvaultError) -> ChatvaultError:
        """``exc`` naming the file as the operator knows it, never its staging copy."""
        for staged_name in (str(self.path), self.path.name):
            exc.detail = exc.detail.replace(staged_name, self.bundle_file)
        exc.path = self.shown
        exc.args = (f"{exc.path}: {exc.detail}",)
        return exc


def max_bundle_bytes(max_plaintext: int) -> int:
    """The largest file a bundle declaring at most ``max_plaintext`` bytes can be."""
    payload = layout.max_payload_for(max_plaintext)
    chunks = payload // layout.MIN_CHUNK + 1
    header = layout.PREFIX_BYTES + layout.MAX_META + layout.MAX_RECIPIENTS * layout.RECIPIENT_BYTES
    return header + 24 + payload + chunks * 17 + 64


def folder(home: Path) -> Path:
    path = Path(home) / "staging"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def pending(home: Path) -> list[Staged]:
    """Bundles fully staged and not yet ingested (left by an interrupted run)."""
    out = []
    for path in sorted(folder(home).glob(f"*{SUFFIX}")):
        if atomic.is_temporary(path.name) or path.is_symlink() or not path.is_file():
            continue
        side = _sidecar(path)
        try:
            info = canonical.loads(side.read_bytes())
            origin = info.get("from")
            staged = Staged(str(info["bundle_file"]), str(info["sha256"]), path,
                            int(info["size"]), origin if isinstance(origin, str) else None)
        except (OSError, canonical.CanonicalError, KeyError, TypeError, ValueError):
            staged = _describe(path)  # renamed, but the sidecar never made it
        if staged.size == path.stat().st_size:
            out.append(staged)
    return out


def _describe(path: Path) -> Staged:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while part := fh.read(_READ):
            digest.update(part)
    name = path.name.split(".", 1)[1] if "." in path.name else path.name
    staged = Staged(name, digest.hexdigest(), path, path.stat().st_size)
    _write_sidecar(staged)
    return staged


def _write_sidecar(staged: Staged) -> None:
    info = {"bundle_file": staged.bundle_file, "sha256": staged.sha256, "size": staged.size,
            "staged_at": timestamps.now_utc(), "from": staged.origin}
    atomic.write_bytes(_sidecar(staged.path), canonical.dumps(info) + b"\n", 0o600)


def remove(staged: Staged) -> None:
    """Forget a staged copy once its outcome is committed (nothing for an uncopied file)."""
    if staged.kind != COPY:
        return
    for path in (staged.path, _sidecar(staged.path)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def stage_from_media(home: Path, media_root: Path, *,
                     max_plaintext: int = layout.DEFAULT_MAX_PLAINTEXT,
                     stop: Callable[[], bool] | None = None) -> list[Staged]:
    """Take every bundle in ``<media>/chatvault/outbox/`` (see module doc)."""
    outbox = media.folder(Path(media_root), media.OUTBOX)
    # no size bound on the listing: an oversized file is refused with a receipt
    files = media.safe_files(outbox, SUFFIX, 2**63)
    return stage_files(home, files, max_plaintext=max_plaintext, stop=stop)


def stage_files(home: Path, files: list[Path], *, limit: int | None = None,
                max_plaintext: int | None = None,
                stop: Callable[[], bool] | None = None) -> list[Staged]:
    """Stage the given bundle files (from media or given on the command line).

    ``max_plaintext`` defaults to the vault's ``limits.max_plaintext_bytes``;
    ``limit`` can only lower the file size that bound allows. When ``stop()``
    turns true, the files not begun yet are left where they are.
    """
    if len(files) > MAX_FILES:
        raise InputRejected(f"{len(files)} bundles at once; at most {MAX_FILES} per run")
    if max_plaintext is None:
        from vault import vaultconfig

        max_plaintext = vaultconfig.load(Path(home)).max_plaintext_bytes
    bound = max_bundle_bytes(max_plaintext)
    rules = (max_plaintext, min(limit, bound) if limit else bound)
    target = folder(home)
    done: list[Staged] = []
    # One stager at a time per vault (the daemon and a person at the command
    # line): the temporaries removed below as leftovers of an interrupted run
    # would otherwise include another run's copy in progress.
    with filelock.exclusive(Path(home) / "staging.lock"), _holdings(Path(home)) as holdings:
        atomic.remove_stale_temporaries(target)
        known = pending(home)
        for n, path in enumerate(files):
            if stop is not None and stop():
                log.info("stopping: %d bundle file(s) not read (%d taken); they stay where "
                         "they are", len(files) - n, len(done))
                break
            try:
                done.append(_stage_one(Path(path), target, known, holdings, rules))
            except InputRejected as exc:
                log.warning("not staged: %s", exc)
            except MediaError as exc:
                exc.staged = list(done)  # type: ignore[attr-defined]
                log.error("staging stopped at %s after %d bundle(s): %s", Path(path).name,
                          len(done), exc.detail)
                raise
    return done


@dataclass
class _Holdings:
    """What the vault already has the bytes of: held bundles, quarantined copies."""

    conn: sqlite3.Connection | None = None
    sizes: set[int] = field(default_factory=set)
    kept: dict[str, Path] = field(default_factory=dict)

    def holds(self, sha: str) -> bool:
        return self.conn is not None and chain.holds(self.conn, sha)


@contextlib.contextmanager
def _holdings(home: Path) -> Iterator[_Holdings]:
    try:
        conn: sqlite3.Connection | None = store.open_store(home / store.FILE_NAME)
    except ChatvaultError as exc:
        # Copy everything, as if the vault held nothing: ingest says what is wrong.
        log.warning("store not readable while staging (%s): every bundle is copied",
                    exc.detail)
        conn = None
    if conn is None:
        yield _Holdings()
        return
    try:
        kept = quarantine.kept_copies(home, conn)
        sizes = chain.held_sizes(conn) | {size for size, _ in kept.values()}
        yield _Holdings(conn, sizes, {sha: path for sha, (_, path) in kept.items()})
    finally:
        conn.close()


def _open_source(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file, never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        _close_source(fd)
        raise atomic.media_error(exc, path) from exc
    if not stat.S_ISREG(st.st_mode):
        _close_source(fd)
        raise InputRejected("not a regular file", path=path)
    return fd, st.st_size


def _pread(fd: int, n: int, offset: int, path: Path) -> bytes:
    parts, got = [], 0
    try:
        while got < n:
            part = os.pread(fd, n - got, offset + got)
            if not part:
                raise MediaMissing("file shrank while being read", path=path)
            parts.append(part)
            got += len(part)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    return b"".join(parts)


def _hash_fd(fd: int, size: int, path: Path) -> str:
    digest = hashlib.sha256()
    left = size
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while left:
            part = os.read(fd, min(_READ, left))
            if not part:
                raise MediaMissing("file shrank while being read", path=path)
            digest.update(part)
            left -= len(part)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    return digest.hexdigest()


def _stage_one(src: Path, target: Path, known: list[Staged], holdings: _Holdings,
               rules: tuple[int, int]) -> Staged:
    name = src.name
    fd, size = _open_source(src)
    try:
        head = _pread(fd, min(size, SAMPLE_BYTES), 0, src)
        refusal = quarantine.first_bytes_verdict(head, name, size, *rules)
        if refusal is not None:
            start = max(len(head), size - SAMPLE_BYTES)
            tail = _pread(fd, size - start, start, src)
            log.debug("%s refused on its first bytes: %s", name, refusal.code)
            return Staged(name, quarantine.identity(name, size, head, tail), src, size,
                          str(src), REFUSED, refusal, head[:EVIDENCE_BYTES])
        same = [s for s in known if s.bundle_file == name and s.size == size]
        if same or size in holdings.sizes:
            sha = _hash_fd(fd, size, src)
            for s in same:
                if s.sha256 == sha:
                    log.debug("%s already staged", name)
                    return s
            if holdings.holds(sha):
                log.debug("%s is held already (sha256 %s): not copied", name, sha[:16])
                return Staged(name, sha, src, size, str(src), HELD)
            if sha in holdings.kept:
                return _relink(holdings.kept[sha], sha, src, size, target)
        media.ensure_space(target, size, media.VAULT_DISK_FULL)
        return _copy(fd, size, src, target)
    finally:
        _close_source(fd)


def _close_source(fd: int) -> None:
    """Close a file on the media; a stick that is gone fails even that (ENOTCONN)."""
    try:
        os.close(fd)
    except OSError:
        pass


def _relink(kept: Path, sha: str, src: Path, size: int, target: Path) -> Staged:
    """Stage the quarantined copy of these very bytes again (a link, or a local copy)."""
    tmp = target / f".{src.name}{atomic.TMP_MARK}{os.getpid()}"
    final = target / f"{sha[:16]}.{src.name}"
    try:
        try:
            os.link(kept, tmp)
        except OSError:
            shutil.copyfile(kept, tmp)
        os.replace(tmp, final)
        atomic.fsync_dir(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise atomic.media_error(exc, final, size) from exc
    staged = Staged(src.name, sha, final, size, str(src))
    _write_sidecar(staged)
    log.info("staged %s again from its quarantined copy (sha256 %s)", src.name, sha[:16])
    return staged


def _copy(fd: int, size: int, src: Path, target: Path) -> Staged:
    digest = hashlib.sha256()
    tmp = target / f".{src.name}{atomic.TMP_MARK}{os.getpid()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        left = size
        os.lseek(fd, 0, os.SEEK_SET)
        while left:
            try:
                part = os.read(fd, min(_READ, left))
            except OSError as exc:
                raise atomic.media_error(exc, src) from exc
            if not part:
                raise MediaMissing("file shrank while being copied", path=src)
            digest.update(part)
            os.write(out, part)
            left -= len(part)
        if os.read(fd, 1):
            raise InputRejected("file grew while being copied", path=src)
        os.fsync(out)
    except OSError as exc:
        os.close(out)
        os.unlink(tmp)
        raise atomic.media_error(exc, tmp, size) from exc
    except BaseException:
        os.close(out)
        os.unlink(tmp)
        raise
    os.close(out)
    sha = digest.hexdigest()
    final = target / f"{sha[:16]}.{src.name}"
    os.replace(tmp, final)
    atomic.fsync_dir(target)
    staged = Staged(src.name, sha, final, size, str(src))
    _write_sidecar(staged)
    log.info("staged %s (%d bytes, sha256 %s)", src.name, size, sha[:16])
    return staged
