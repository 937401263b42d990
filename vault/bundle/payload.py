"""The payload inside the encryption: a sequence of frames, then zstd.

Frames (all integers big-endian)::

    'R' u32 length  canonical JSON record (one conversation), <= 64 MiB
    'A' 32-byte SHA-256  u64 length  attachment content, <= the declared size
    'E' u64 records  u64 attachments   end of payload; nothing may follow

Attachments are addressed by the SHA-256 of their content, which the reader
checks; no name or path from the data is ever used to place them.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from dataclasses import dataclass
from typing import IO, Iterator, Union

from vault.errors import CorruptPayload, Oversize

MAX_RECORD = 64 * 1024 * 1024
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_END = struct.Struct(">QQ")
_COPY = 1024 * 1024


def record_frame(data: bytes) -> bytes:
    if len(data) > MAX_RECORD:
        raise Oversize(f"record of {len(data)} bytes exceeds {MAX_RECORD}")
    return b"R" + _U32.pack(len(data)) + data


def blob_frame_head(sha256: bytes, size: int) -> bytes:
    return b"A" + sha256 + _U64.pack(size)


def end_frame(records: int, blobs: int) -> bytes:
    return b"E" + _END.pack(records, blobs)


@dataclass
class Record:
    data: bytes


@dataclass
class Blob:
    sha256: str
    size: int
    content: IO[bytes]  # positioned at 0; a spooled temporary file


Item = Union[Record, Blob]


class FrameReader:
    """Parses frames from a decompressed stream, never reading past ``limit``."""

    def __init__(self, stream: IO[bytes], limit: int, path: str) -> None:
        self._stream = stream
        self._left = limit
        self._path = path
        self.records = 0
        self.blobs = 0

    def _read(self, n: int) -> bytes:
        if n > self._left:
            raise Oversize("payload is larger than its declared size", path=self._path)
        parts = []
        want = n
        while want:
            part = self._stream.read(want)
            if not part:
                raise CorruptPayload("payload ends inside a frame", path=self._path)
            parts.append(part)
            want -= len(part)
        self._left -= n
        return b"".join(parts)

    def __iter__(self) -> Iterator[Item]:
        while True:
            # every frame is at least 5 bytes: type and length of a record come
            # in one read (one call fewer per record)
            head = self._read(5)
            kind = head[:1]
            if kind == b"R":
                (size,) = _U32.unpack(head[1:])
                if size > MAX_RECORD:
                    raise CorruptPayload(f"record frame of {size} bytes", path=self._path)
                self.records += 1
                yield Record(self._read(size))
            elif kind == b"A":
                yield self._blob(head[1:])
            elif kind == b"E":
                self._end(head[1:])
                return
            else:
                raise CorruptPayload(f"unknown frame type {kind!r}", path=self._path)

    def _blob(self, start: bytes) -> Blob:
        sha = start + self._read(32 - len(start))
        (size,) = _U64.unpack(self._read(8))
        if size > self._left:
            raise Oversize("attachment larger than the declared payload", path=self._path)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        digest = hashlib.sha256()
        left = size
        while left:
            part = self._read(min(left, _COPY))
            digest.update(part)
            spool.write(part)
            left -= len(part)
        if digest.digest() != sha:
            raise CorruptPayload(f"attachment {sha.hex()[:16]} does not match its hash",
                                 path=self._path)
        spool.seek(0)
        self.blobs += 1
        return Blob(sha.hex(), size, spool)

    def _end(self, start: bytes) -> None:
        records, blobs = _END.unpack(start + self._read(_END.size - len(start)))
        if (records, blobs) != (self.records, self.blobs):
            raise CorruptPayload(f"end frame counts {records}/{blobs} differ from the "
                                 f"frames read {self.records}/{self.blobs}", path=self._path)
        if self._left != 0:
            raise CorruptPayload(f"{self._left} declared payload bytes missing after the end "
                                 "frame", path=self._path)
        if self._stream.read(1):
            raise CorruptPayload("data after the end frame", path=self._path)
