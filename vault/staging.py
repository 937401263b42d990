"""Staging: bundles copied from the media to ``H/staging/`` while hashing.

Nothing is verified or opened on the media itself: every bundle is first
copied onto the vault's own disk, and ingest works on that private copy
(the reader hashes a file twice; a stick's content could change in between).

* **Safe**: files are listed with :func:`vault.media.safe_files` (no
  symlinks, no odd names, no special files) and opened with
  ``O_NOFOLLOW``; at most :data:`MAX_FILES` per run, each at most the size
  a bundle within the vault's plaintext limit can have, and never more than
  the listing said (a file that grows while copied is refused).
* **Atomic and resumable**: a copy is written under a temporary name,
  fsynced and renamed to ``<sha256[:16]>.<file name>``, then a small
  ``.staged.json`` beside it records name, size and hash. A copy cut short
  by a pulled stick is only ever a temporary file, discarded on the next
  run. A bundle already staged with the same name, size and hash is not
  copied again (its media copy is read once to compare the hash).
* **Loses nothing**: when the media disappears mid-run, a MediaError
  (exit 5) is raised carrying in ``.staged`` every bundle fully staged so
  far; they stay in staging (:func:`pending`) until ingested.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vault import atomic, canonical, media, timestamps
from vault.bundle import layout
from vault.errors import InputRejected, MediaError, MediaMissing

log = logging.getLogger(__name__)

SUFFIX = ".cvb"
SIDECAR = ".staged.json"
MAX_FILES = 10_000
_READ = 1024 * 1024


@dataclass(frozen=True)
class Staged:
    """A bundle fully copied to staging: its name on the media, hash, local path, size."""

    bundle_file: str
    sha256: str
    path: Path
    size: int


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
            staged = Staged(str(info["bundle_file"]), str(info["sha256"]), path,
                            int(info["size"]))
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


def _write_sidecar(staged: Staged, media_path: str | None = None) -> None:
    info = {"bundle_file": staged.bundle_file, "sha256": staged.sha256, "size": staged.size,
            "staged_at": timestamps.now_utc(), "from": media_path}
    atomic.write_bytes(_sidecar(staged.path), canonical.dumps(info) + b"\n", 0o600)


def remove(staged: Staged) -> None:
    """Forget a staged bundle once its outcome is committed."""
    for path in (staged.path, _sidecar(staged.path)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def stage_from_media(home: Path, media_root: Path, *,
                     max_plaintext: int = layout.DEFAULT_MAX_PLAINTEXT) -> list[Staged]:
    """Copy every bundle in ``<media>/chatvault/outbox/`` to staging (see module doc)."""
    outbox = media.folder(Path(media_root), media.OUTBOX)
    limit = max_bundle_bytes(max_plaintext)
    for big in media.oversized_files(outbox, SUFFIX, limit):
        log.warning("skipping %s: larger than any bundle this vault accepts (%d bytes)",
                    big.name, limit)
    return stage_files(home, media.safe_files(outbox, SUFFIX, limit), limit=limit)


def stage_files(home: Path, files: list[Path], *, limit: int | None = None) -> list[Staged]:
    """Stage the given bundle files (from media or given on the command line)."""
    if len(files) > MAX_FILES:
        raise InputRejected(f"{len(files)} bundles at once; at most {MAX_FILES} per run")
    target = folder(home)
    limit = limit or max_bundle_bytes(layout.DEFAULT_MAX_PLAINTEXT)
    done: list[Staged] = []
    # One stager at a time per vault (the daemon and a person at the command
    # line): the temporaries removed below as leftovers of an interrupted run
    # would otherwise include another run's copy in progress.
    with _staging_lock(Path(home)):
        atomic.remove_stale_temporaries(target)
        known = pending(home)
        for path in files:
            try:
                done.append(_stage_one(Path(path), target, known, limit))
            except InputRejected as exc:
                log.warning("not staged: %s", exc)
            except MediaError as exc:
                exc.staged = list(done)  # type: ignore[attr-defined]
                log.error("staging stopped at %s after %d bundle(s): %s", Path(path).name,
                          len(done), exc.detail)
                raise
    return done


@contextlib.contextmanager
def _staging_lock(home: Path) -> Iterator[None]:
    fd = os.open(home / "staging.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_source(path: Path, limit: int) -> tuple[int, int]:
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
    if st.st_size > limit:
        _close_source(fd)
        raise InputRejected(f"{st.st_size} bytes: larger than any acceptable bundle", path=path)
    return fd, st.st_size


def _hash_fd(fd: int, size: int, path: Path) -> str:
    digest = hashlib.sha256()
    left = size
    try:
        while left:
            part = os.read(fd, min(_READ, left))
            if not part:
                raise MediaMissing("file shrank while being read", path=path)
            digest.update(part)
            left -= len(part)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    return digest.hexdigest()


def _stage_one(src: Path, target: Path, known: list[Staged], limit: int) -> Staged:
    name = src.name
    fd, size = _open_source(src, limit)
    try:
        same = [s for s in known if s.bundle_file == name and s.size == size]
        if same:
            sha = _hash_fd(fd, size, src)
            for s in same:
                if s.sha256 == sha:
                    log.debug("%s already staged", name)
                    return s
            try:
                os.lseek(fd, 0, os.SEEK_SET)
            except OSError as exc:
                raise atomic.media_error(exc, src) from exc
        media.ensure_space(target, size)
        return _copy(fd, size, src, target)
    finally:
        _close_source(fd)


def _close_source(fd: int) -> None:
    """Close a file on the media; a stick that is gone fails even that (ENOTCONN)."""
    try:
        os.close(fd)
    except OSError:
        pass


def _copy(fd: int, size: int, src: Path, target: Path) -> Staged:
    digest = hashlib.sha256()
    tmp = target / f".{src.name}{atomic.TMP_MARK}{os.getpid()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        left = size
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
    staged = Staged(src.name, sha, final, size)
    _write_sidecar(staged, str(src))
    log.info("staged %s (%d bytes, sha256 %s)", src.name, size, sha[:16])
    return staged
