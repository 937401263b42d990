"""Opening: check, verify, and only then decrypt and decompress.

The order is the security argument, so it is fixed here and nowhere else:

1. read the fixed prefix; check magic, version, every limit and the exact
   file length (no crypto yet);
2. look the signer up in the trust store (unknown or revoked: refused);
3. hash the whole file and verify the Ed25519 signature;
4. only now parse the meta JSON (bounded, must be canonical);
5. on request, unseal the payload key, decrypt chunk by chunk, decompress
   as a stream capped at the declared size, and parse frames.

While decrypting, the bytes are hashed again and compared with what step 3
verified, so a file changed between the two passes is refused. Callers that
must not depend on that (the vault) open a private staging copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Iterator, Protocol, cast

import zstandard

from vault import canonical
from vault.bundle import crypto, layout, payload
from vault.errors import (ChatvaultError, CorruptPayload, InputRejected, MalformedHeader,
                          Truncated)
from vault.keys import Identity, SignerKey

_READ = 1024 * 1024
_REQUIRED_META = {"format": str, "kind": str, "bundle_id": str, "source": str,
                  "sequence": int, "created_at": str, "counts": dict, "signer": str}


class SignerCheck(Protocol):
    """What the reader needs of a trust store: refuse or return the entry."""

    def require(self, sign_pk: bytes, role: str, what: str = ...) -> Any: ...


@dataclass(frozen=True)
class Verified:
    path: Path
    sha256: str
    size: int
    meta: dict[str, Any]
    signer: Any  # the trust entry (has .fingerprint, .public)
    prefix: layout.Prefix


class Bundle:
    """An open bundle file. Use :func:`verify` or :func:`open_verified`."""

    def __init__(self, path: Path | str, *, max_plaintext: int = layout.DEFAULT_MAX_PLAINTEXT):
        self.path = Path(path)
        self._name = str(path)
        self._fh: IO[bytes] = _open_regular(self.path)
        try:
            self.size = os.fstat(self._fh.fileno()).st_size
            head = self._fh.read(layout.PREFIX_BYTES)
            self.prefix = layout.parse_prefix(head, self._name, max_plaintext=max_plaintext,
                                              file_size=self.size)
            rest = self._read_exact(self.prefix.header_bytes - layout.PREFIX_BYTES)
        except BaseException:
            self._fh.close()
            raise
        self.header = head + rest
        self._meta_bytes = rest[:self.prefix.meta_len]
        self.prefix = replace(self.prefix, signer=SignerKey(self.prefix.signer,
                                                            _claimed(self._meta_bytes)))
        self.recipients = layout.split_recipients(rest[self.prefix.meta_len:])
        self._signed_digest: bytes | None = None
        self.meta: dict[str, Any] | None = None

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def _read_exact(self, n: int) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise Truncated("file ended early", path=self._name)
        return data

    def check_signer(self, trust: SignerCheck, role: str) -> Any:
        """The signer's trust entry; a refusal names this file as given (``path`` in --json)."""
        try:
            return trust.require(self.prefix.signer, role, what="signer")
        except ChatvaultError as exc:
            if exc.path is not None:
                raise
            raise type(exc)(exc.detail, path=self._name) from None

    def verify_signature(self) -> str:
        """Hash the whole file, verify the signature; return the file's SHA-256."""
        self._fh.seek(0)
        signed = crypto.signed_hasher()
        whole = hashlib.sha256()
        left = self.size - crypto.SIGNATURE_BYTES
        while left:
            data = self._fh.read(min(_READ, left))
            if not data:
                raise Truncated("file shrank while being read", path=self._name)
            signed.update(data)
            whole.update(data)
            left -= len(data)
        signature = self._read_exact(crypto.SIGNATURE_BYTES)
        whole.update(signature)
        crypto.verify_digest(self.prefix.signer, signed.digest(), signature, self._name)
        self._signed_digest = signed.digest()
        self.meta = _parse_meta(self._meta_bytes, self._name)
        return whole.hexdigest()

    def items(self, identity: Identity) -> Iterator[payload.Item]:
        """Decrypt, decompress and yield records and blobs (after verification)."""
        if self._signed_digest is None:
            raise RuntimeError("verify_signature() must come before items()")
        key = crypto.find_recipient(self.recipients, identity.private_key, self._name)
        plain = _DecryptingReader(self, key)
        source = cast(IO[bytes], plain)  # a RawIOBase: what stream_reader reads from
        dctx = zstandard.ZstdDecompressor()
        with dctx.stream_reader(source, read_size=self.prefix.chunk_size,
                                read_across_frames=True) as stream:
            frames = payload.FrameReader(io.BufferedReader(stream, _READ),
                                         self.prefix.plaintext_size, self._name)
            try:
                yield from frames
            except zstandard.ZstdError as exc:
                raise CorruptPayload(f"compressed payload is damaged ({exc})",
                                     path=self._name) from None
        plain.finish()


class _DecryptingReader(io.RawIOBase):
    """The compressed payload, decrypted chunk by chunk as zstd asks for it."""

    def __init__(self, bundle: Bundle, key: bytes) -> None:
        self._b = bundle
        fh = bundle._fh
        fh.seek(0)
        self._signed = crypto.signed_hasher()
        self._signed.update(fh.read(bundle.prefix.header_bytes))
        stream_header = bundle._read_exact(crypto.STREAM_HEADER_BYTES)
        self._signed.update(stream_header)
        ad = hashlib.sha256(bundle.header).digest()
        self._dec = crypto.Decryptor(key, stream_header, ad, bundle._name)
        self._lengths = bundle.prefix.chunk_lengths()
        self._index = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._index >= len(self._lengths):
                return 0
            self._pending = self._next_chunk()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_chunk(self) -> bytes:
        i = self._index
        data = self._b._read_exact(self._lengths[i])
        self._signed.update(data)
        self._index += 1
        return self._dec.pull(data, expect_final=(i == len(self._lengths) - 1), index=i)

    def finish(self) -> None:
        """Every chunk consumed, and the bytes were the ones verified."""
        while self._index < len(self._lengths):
            if self._next_chunk() or self._pending:
                raise CorruptPayload("compressed data after the end of the zstd frame",
                                     path=self._b._name)
        if self._pending:
            raise CorruptPayload("compressed data after the end of the zstd frame",
                                 path=self._b._name)
        if self._signed.digest() != self._b._signed_digest:
            raise CorruptPayload("file changed between verification and decryption",
                                 path=self._b._name)


def _claimed(data: bytes) -> object:
    """The signer fingerprint the (not yet verified) meta names, for messages only."""
    try:
        meta = canonical.loads(data)
    except canonical.CanonicalError:
        return None
    return meta.get("signer") if isinstance(meta, dict) else None


def _parse_meta(data: bytes, path: str) -> dict[str, Any]:
    try:
        meta = canonical.loads(data)
    except canonical.CanonicalError as exc:
        raise MalformedHeader(f"meta is not JSON ({exc})", path=path) from None
    if not isinstance(meta, dict) or canonical.dumps(meta) != data:
        raise MalformedHeader("meta is not a canonical JSON object", path=path)
    for key, kind in _REQUIRED_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise MalformedHeader(f"meta field {key!r} missing or not {kind.__name__}",
                                  path=path)
    return meta


def verify(path: Path | str, trust: SignerCheck, role: str = "exporter", *,
           max_plaintext: int = layout.DEFAULT_MAX_PLAINTEXT) -> Verified:
    """Steps 1-4: structure, trust, signature, meta. Decrypts nothing."""
    with Bundle(path, max_plaintext=max_plaintext) as b:
        entry = b.check_signer(trust, role)
        sha = b.verify_signature()
        assert b.meta is not None
        return Verified(b.path, sha, b.size, b.meta, entry, b.prefix)


def _open_regular(path: Path) -> IO[bytes]:
    """Open a bundle file for reading; a FIFO, device or folder is refused, never waited on.

    ``O_NONBLOCK`` keeps opening a FIFO from blocking until a writer comes;
    the descriptor is made blocking again once it is known to be a file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputRejected("is not a regular file (a bundle is one file); nothing "
                                "was read from it", path=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def inspect(path: Path | str) -> dict[str, Any]:
    """The header as written, without any key: for people, not for trust.

    Nothing here is verified (that needs the trust store): the fields are
    shown as the file claims them.
    """
    with Bundle(path) as b:
        try:
            meta = _parse_meta(b._meta_bytes, b._name)
        except MalformedHeader as exc:
            meta = {"unparsed": exc.detail}
        p = b.prefix
        return {"path": str(b.path), "size": b.size, "version": p.version,
                "chunk_size": p.chunk_size, "chunks": p.chunk_count,
                "plaintext_size": p.plaintext_size, "payload_size": p.payload_size,
                "recipient_count": p.recipient_count, "signer_key": p.signer.hex(),
                "verified": False, "meta": meta}
