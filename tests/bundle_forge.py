"""Take bundles apart and put them back together, for tampering tests.

A forger holding the exporter's signing key can make the signature valid
again after changing the bytes; these tests then show that the layers under
the signature (AEAD, framing, size bounds) still refuse the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vault.bundle import crypto, layout
from vault.keys import Identity


@dataclass
class Parts:
    header: bytes
    stream_header: bytes
    chunks: list[bytes]
    signature: bytes
    prefix: layout.Prefix

    def assemble(self, signer: Identity | None = None) -> bytes:
        body = self.header + self.stream_header + b"".join(self.chunks)
        if signer is None:
            return body + self.signature
        digest = hashlib.sha512(body).digest()
        return body + crypto.sign_digest(signer.signing_key, digest)


def split(data: bytes) -> Parts:
    prefix = layout.parse_prefix(data[:layout.PREFIX_BYTES], "forge")
    pos = prefix.header_bytes
    header = data[:pos]
    stream_header = data[pos:pos + crypto.STREAM_HEADER_BYTES]
    pos += crypto.STREAM_HEADER_BYTES
    chunks = []
    for length in prefix.chunk_lengths():
        chunks.append(data[pos:pos + length])
        pos += length
    return Parts(header, stream_header, chunks, data[pos:pos + 64], prefix)


def chunk_offsets(data: bytes) -> list[int]:
    """File offsets where each chunk starts, then where the signature starts."""
    parts = split(data)
    pos = parts.prefix.header_bytes + crypto.STREAM_HEADER_BYTES
    out = []
    for c in parts.chunks:
        out.append(pos)
        pos += len(c)
    out.append(pos)
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
