"""Sealing: records and attachments in, one signed and encrypted bundle out.

Two stages keep memory flat whatever the size. Stage one frames the records
and compresses them with zstd into a temporary file beside the output,
counting what the header must declare. Stage two, once the header is known,
encrypts that compressed stream chunk by chunk (binding the header hash to
every chunk), signs, and renames the result into place. The only extra cost
is one write and read of the *compressed* bytes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

import zstandard

from vault import __version__, canonical, timestamps
from vault.atomic import AtomicFile, check_target, media_error
from vault.bundle import crypto, layout, payload
from vault.errors import InvalidRecord
from vault.keys import Identity, PublicIdentity
from vault.records import Summary

_BUFFER = 1024 * 1024
FORMAT_NAME = "chatvault-bundle"


@dataclass(frozen=True)
class Sealed:
    """A finished bundle: where it is, its SHA-256, size and header meta."""

    path: Path
    sha256: str
    size: int
    meta: dict[str, Any]


def _threads(threads: int) -> int:
    """zstandard's thread count: 0 in-thread, -1 one worker per core."""
    return -1 if threads < 0 else threads


class BundleWriter:
    """Seal records into ``path``; call :meth:`finish` (or :meth:`abort`)."""

    def __init__(self, path: Path | str, signer: Identity,
                 recipients: Sequence[PublicIdentity], *, kind: str = "export",
                 source: str, sequence: int, prev_hash: str | None = None,
                 context: dict[str, Any] | None = None, level: int = 3,
                 threads: int = 0, chunk_size: int = layout.DEFAULT_CHUNK) -> None:
        if not recipients:
            raise ValueError("a bundle needs at least one recipient")
        if not layout.MIN_CHUNK <= chunk_size <= layout.MAX_CHUNK:
            raise ValueError(f"chunk size {chunk_size} out of range")
        self.path = Path(path)
        check_target(self.path)  # before any work, and before a temporary lands beside it
        self.signer = signer
        self.recipients = _unique(recipients)
        self.base_meta = {"kind": kind, "source": source, "sequence": sequence,
                          "prev_hash": prev_hash, "context": context or {}}
        self.level = level
        self.chunk_size = chunk_size
        self.plaintext_size = 0
        self._counts = {"conversations": 0, "messages": 0, "participants": 0,
                        "attachments": 0, "blobs": 0}
        self._first: str | None = None
        self._last: str | None = None
        self._blobs: set[str] = set()
        self._buf: list[bytes] = []
        self._buffered = 0
        self._ztmp = self.path.parent / f".{self.path.name}.tmp-z{os.getpid()}"
        try:
            self._zraw: IO[bytes] = open(self._ztmp, "w+b")
        except OSError as exc:
            raise media_error(exc, self.path) from exc
        cctx = zstandard.ZstdCompressor(level=level, threads=_threads(threads))
        self._zw = cctx.stream_writer(self._zraw, closefd=False, write_size=_BUFFER)

    # -- stage one: frames into the compressor ---------------------------------------

    def _put(self, data: bytes) -> None:
        self.plaintext_size += len(data)
        self._buf.append(data)
        self._buffered += len(data)
        if self._buffered >= _BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            try:
                self._zw.write(b"".join(self._buf))
            except OSError as exc:
                raise media_error(exc, self.path) from exc
            self._buf.clear()
            self._buffered = 0

    def add_record(self, data: bytes, summary: Summary) -> None:
        """Add one canonical record (already validated: see vault.records)."""
        self._put(payload.record_frame(data))
        c = self._counts
        c["conversations"] += 1
        c["messages"] += summary.messages
        c["participants"] += summary.participants
        c["attachments"] += summary.attachments
        key = timestamps.order_key
        if summary.first_at and (self._first is None
                                 or key(summary.first_at) < key(self._first)):
            self._first = summary.first_at
        if summary.last_at and (self._last is None or key(summary.last_at) > key(self._last)):
            self._last = summary.last_at

    def add_blob(self, sha256_hex: str, content: IO[bytes], size: int) -> bool:
        """Add attachment content once per bundle; False when already present."""
        if sha256_hex in self._blobs:
            return False
        self._put(payload.blob_frame_head(bytes.fromhex(sha256_hex), size))
        digest = hashlib.sha256()
        left = size
        while left:
            part = content.read(min(left, _BUFFER))
            if not part:
                raise InvalidRecord(f"attachment {sha256_hex[:16]} ended after "
                                    f"{size - left} of {size} bytes")
            digest.update(part)
            self._put(part)
            left -= len(part)
        if digest.hexdigest() != sha256_hex:
            raise InvalidRecord(f"attachment content does not match sha256 {sha256_hex[:16]}")
        self._blobs.add(sha256_hex)
        self._counts["blobs"] += 1
        return True

    # -- stage two: header, encryption, signature ------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {**self.base_meta, "format": FORMAT_NAME, "bundle_id": uuid.uuid4().hex,
                "created_at": timestamps.now_utc(), "counts": dict(self._counts),
                "window": {"first": self._first, "last": self._last},
                "compression": {"algorithm": "zstd", "level": self.level},
                "signer": self.signer.fingerprint, "software": f"chatvault {__version__}",
                "recipients": [r.fingerprint for r in self.recipients]}

    def finish(self) -> Sealed:
        try:
            self._put(payload.end_frame(self._counts["conversations"], self._counts["blobs"]))
            self._flush()
            try:
                # the compressor holds up to a buffer: the disk may fill only here
                self._zw.flush(zstandard.FLUSH_FRAME)
                self._zw.close()
                payload_size = self._zraw.tell()
                self._zraw.seek(0)
            except OSError as exc:
                # named by the bundle asked for: the temporary is ours, not the operator's
                raise media_error(exc, self.path) from exc
            meta = self._meta()
            return self._encrypt(meta, payload_size)
        finally:
            self._cleanup()

    def abort(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            self._zraw.close()
        except OSError:
            pass  # flushing what is thrown away anyway (a full disk): not the failure to report
        finally:
            try:
                os.unlink(self._ztmp)
            except FileNotFoundError:
                pass

    def _encrypt(self, meta: dict[str, Any], payload_size: int) -> Sealed:
        meta_bytes = canonical.dumps(meta)
        key = crypto.new_payload_key()
        recips = b"".join(r.box_pk + crypto.seal_key(key, r.box_pk) for r in self.recipients)
        prefix = layout.Prefix(layout.VERSION, len(meta_bytes), self.chunk_size,
                               len(self.recipients), self.plaintext_size, payload_size,
                               self.signer.sign_pk)
        header = prefix.pack() + meta_bytes + recips
        enc = crypto.Encryptor(key, hashlib.sha256(header).digest())
        signed = crypto.signed_hasher()
        whole = hashlib.sha256()

        with AtomicFile(self.path) as out:
            def emit(data: bytes) -> None:
                signed.update(data)
                whole.update(data)
                out.write(data)

            emit(header)
            emit(enc.header)
            left = payload_size
            while True:
                chunk = self._zraw.read(min(self.chunk_size, left))
                left -= len(chunk)
                emit(enc.push(chunk, final=(left == 0)))
                if left == 0:
                    break
            signature = crypto.sign_digest(self.signer.signing_key, signed.digest())
            whole.update(signature)
            out.write(signature)
        size = prefix.total_size
        return Sealed(self.path, whole.hexdigest(), size, meta)


def _unique(recipients: Sequence[PublicIdentity]) -> list[PublicIdentity]:
    seen: dict[bytes, PublicIdentity] = {}
    for r in recipients:
        seen.setdefault(r.box_pk, r)
    if len(seen) > layout.MAX_RECIPIENTS:
        raise ValueError(f"at most {layout.MAX_RECIPIENTS} recipients")
    return list(seen.values())
