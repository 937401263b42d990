"""The byte layout of a sealed bundle (version 1). FORMAT.md is the full spec.

::

    +0    8   magic            89 43 56 42 0D 0A 1A 0A   ("\\x89CVB\\r\\n\\x1a\\n")
    +8    2   version          u16 big-endian, 1
    +10   2   flags            0 (reserved)
    +12   4   meta_len         u32, length of the meta JSON, 2 .. 65536
    +16   4   chunk_size       u32, plaintext bytes per chunk, 4 KiB .. 16 MiB
    +20   2   recipient_count  u16, 1 .. 32
    +22   2   reserved         0
    +24   8   plaintext_size   u64, payload bytes after decompression
    +32   8   payload_size     u64, compressed payload bytes (sum of chunks)
    +40  32   signer           Ed25519 public key of the signer
    +72   m   meta             canonical JSON object (UTF-8)
          r   recipients       recipient_count x (X25519 public key 32 ||
                               sealed payload key 80)
          24  stream header    crypto_secretstream_xchacha20poly1305
          ..  chunks           n = max(1, ceil(payload_size / chunk_size));
                               each chunk_size + 17 bytes, the last one
                               (payload_size - (n-1) * chunk_size) + 17, tagged FINAL
          64  signature        Ed25519 over "chatvault/bundle/v1/signature\\0" ||
                               SHA-512(every byte before the signature)

Everything up to and including the recipients is the **header**; its
SHA-256 is the additional data of every chunk. The fixed fields let a reader
check every limit, the exact file length and the signer's trust before any
crypto work, and verify the signature before parsing any JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vault.bundle import crypto
from vault.errors import (BadMagic, MalformedHeader, Oversize, Truncated, TrailingData,
                          UnsupportedVersion)

MAGIC = b"\x89CVB\r\n\x1a\n"
VERSION = 1
PREFIX = struct.Struct(">8sHHIIHHQQ32s")
PREFIX_BYTES = PREFIX.size  # 72
RECIPIENT_BYTES = 32 + crypto.SEALED_KEY_BYTES  # 112

MIN_META = 2
MAX_META = 64 * 1024
MIN_CHUNK = 4 * 1024
MAX_CHUNK = 16 * 1024 * 1024
DEFAULT_CHUNK = 1024 * 1024
MAX_RECIPIENTS = 32
DEFAULT_MAX_PLAINTEXT = 64 * 1024**3


@dataclass(frozen=True)
class Prefix:
    version: int
    meta_len: int
    chunk_size: int
    recipient_count: int
    plaintext_size: int
    payload_size: int
    signer: bytes

    def pack(self) -> bytes:
        return PREFIX.pack(MAGIC, self.version, 0, self.meta_len, self.chunk_size,
                           self.recipient_count, 0, self.plaintext_size,
                           self.payload_size, self.signer)

    @property
    def header_bytes(self) -> int:
        return PREFIX_BYTES + self.meta_len + self.recipient_count * RECIPIENT_BYTES

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.payload_size // self.chunk_size))

    def chunk_lengths(self) -> list[int]:
        """Ciphertext length of each chunk, in order (small: one int per chunk)."""
        n = self.chunk_count
        last = self.payload_size - (n - 1) * self.chunk_size
        full = self.chunk_size + crypto.CHUNK_OVERHEAD
        return [full] * (n - 1) + [last + crypto.CHUNK_OVERHEAD]

    @property
    def total_size(self) -> int:
        return (self.header_bytes + crypto.STREAM_HEADER_BYTES + self.payload_size
                + self.chunk_count * crypto.CHUNK_OVERHEAD + crypto.SIGNATURE_BYTES)


def max_payload_for(plaintext_size: int) -> int:
    """The most compressed bytes zstd can produce for ``plaintext_size`` bytes."""
    return plaintext_size + (plaintext_size >> 7) + 4096


def parse_prefix(data: bytes, path: str, *, max_plaintext: int = DEFAULT_MAX_PLAINTEXT,
                 file_size: int | None = None) -> Prefix:
    """Check every fixed field against the limits, and the file's exact length."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise BadMagic("not a chatvault bundle (bad magic bytes)", path=path)
    if len(data) < PREFIX_BYTES:
        raise Truncated(f"file ends inside the fixed header ({len(data)} bytes)", path=path)
    (_, version, flags, meta_len, chunk_size, rcount, reserved, plain, payload,
     signer) = PREFIX.unpack(data[:PREFIX_BYTES])
    if version > VERSION:
        raise UnsupportedVersion(f"bundle format version {version} was written by a newer "
                                 "chatvault; upgrade to read it", path=path)
    if version != VERSION:
        raise UnsupportedVersion(f"unsupported bundle format version {version}", path=path)
    if flags or reserved:
        raise MalformedHeader("reserved header fields are not zero", path=path)
    if not MIN_META <= meta_len <= MAX_META:
        raise MalformedHeader(f"meta length {meta_len} outside {MIN_META}..{MAX_META}",
                              path=path)
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise MalformedHeader(f"chunk size {chunk_size} outside {MIN_CHUNK}..{MAX_CHUNK}",
                              path=path)
    if not 1 <= rcount <= MAX_RECIPIENTS:
        raise MalformedHeader(f"recipient count {rcount} outside 1..{MAX_RECIPIENTS}",
                              path=path)
    if plain > max_plaintext:
        raise Oversize(f"declares {plain} bytes of payload, above this vault's limit of "
                       f"{max_plaintext}", path=path)
    if payload > max_payload_for(plain):
        raise Oversize(f"compressed payload of {payload} bytes cannot come from the declared "
                       f"{plain} bytes", path=path)
    prefix = Prefix(version, meta_len, chunk_size, rcount, plain, payload, signer)
    if file_size is not None:
        check_length(prefix, file_size, path)
    return prefix


def check_length(prefix: Prefix, file_size: int, path: str) -> None:
    expected = prefix.total_size
    if file_size < expected:
        raise Truncated(f"file has {file_size} bytes, the header declares {expected}",
                        path=path)
    if file_size > expected:
        raise TrailingData(f"{file_size - expected} unexpected bytes after the signature",
                           path=path)


def split_recipients(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(data[i:i + 32], data[i + 32:i + RECIPIENT_BYTES])
            for i in range(0, len(data), RECIPIENT_BYTES)]
