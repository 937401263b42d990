"""Canonical JSONL, chatvault's own format: one conversation per line.

Files may be zstd-compressed (``.zst``). The frame is read as a stream, so a
frame written by a streaming compressor (no content size in its header) reads
as well as any other; the decompressed size is capped like any export file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import zstandard

from vault import canonical, records
from vault.errors import UnreadableExport
from vault.sources import MAX_EXPORT_FILE_BYTES, ReadOptions

DESCRIPTION = "chatvault canonical JSONL, one conversation per line (.jsonl, .jsonl.zst)"

_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.zst", ".ndjson.zst")


def wants(path: Path) -> bool:
    return path.name.endswith(_SUFFIXES)


class _CappedReader(io.RawIOBase):
    """Passes bytes through and fails once more than ``cap`` have been read."""

    def __init__(self, inner: IO[bytes], cap: int, path: Path) -> None:
        self.inner, self.cap, self.path, self.count = inner, cap, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.cap:
            raise UnreadableExport(f"decompresses to more than {self.cap} bytes", path=self.path)
        buffer[: len(data)] = data
        return len(data)


def open_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path``, decompressing ``.zst`` as a bounded stream."""
    with open(path, "rb") as raw:
        if path.name.endswith(".zst"):
            dctx = zstandard.ZstdDecompressor()
            stream: IO[bytes] = io.BufferedReader(
                _CappedReader(dctx.stream_reader(raw, read_across_frames=True),
                              MAX_EXPORT_FILE_BYTES, path))
        else:
            stream = raw
        try:
            yield from stream
        except zstandard.ZstdError as exc:
            raise UnreadableExport(f"corrupt zstd data ({exc})", path=path) from None


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    good = bad = 0
    for lineno, line in enumerate(open_lines(path), 1):
        if not line.strip():
            continue
        try:
            conv = canonical.loads(line)
        except canonical.CanonicalError as exc:
            bad += 1
            options.problem(path, f"line {lineno}", f"a JSON object ({exc})")
            continue
        if not isinstance(conv, dict):
            bad += 1
            options.problem(path, f"line {lineno}", "a JSON object, one conversation per line")
            continue
        good += 1
        yield conv
    if bad and not good:
        raise UnreadableExport("no line could be read as a conversation", path=path)


def write(conversations: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    out = Path(out_dir) / "conversations.jsonl"
    with open(out, "wb") as fh:
        for conv in conversations:
            line, _ = records.canonical_record(conv)
            fh.write(line + b"\n")
    return [out]
