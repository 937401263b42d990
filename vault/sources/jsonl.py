"""Canonical JSONL, chatvault's own format: one conversation per line.

Files may be zstd-compressed (``.zst``). The frames are read as a stream, so
a frame written by a streaming compressor (no content size in its header)
reads as well as any other; the decompressed size is capped like any export
file. A ``.zst`` file is all or nothing: before any line of it is read, the
whole stream is decompressed once and checked (every frame complete to its
end, its checksum matching when it carries one, no bytes that are no frame,
not empty, at most ``MAX_EXPORT_FILE_BYTES`` out). A file cut short (a copy
interrupted, ``head -c``), corrupt or over the cap yields no conversation:
it is refused naming the file (in a folder: reported, the other files read;
``export run`` exits 3 and reads it again next run), because the lines
before the cut could hold an older, shorter version of a conversation that
would be sealed as if current. The check costs one more decompression pass
(zstd decodes at several hundred MB/s; a 50 MB file holding 170 MB of JSONL
took 0.2 s more, about a fifth of reading it). A file rewritten between the
check and the reading is still found out at its end, after the lines before
the cut were passed on: write exports to a temporary name and rename them.

Message lines. A line without ``conversation_id`` that has a ``text`` string
is read as one message of a simple chat log (``id``, ``text``, the author in
``from``/``sender``/``author``, the time in ``at``/``timestamp``/``time``
as RFC 3339 or Unix seconds). A line may name its ``conversation``;
otherwise all message lines of a file are one conversation, whose id is
derived from the source and the file name. Authors are participants named
as written (role ``customer``). A file whose messages carry no time at all
takes the file's modification time and says so in ``extra.time_source``
and in a warning naming the file: nothing is left out, so it is not a
problem that fails the run (a reader that loses data reports those).

Encoding. Lines are UTF-8 (a byte order mark before the first is dropped). A
line that is not is reported naming the byte; a file whose first line is
UTF-16 or UTF-32 (a byte order mark, or every other byte 0) is refused
saying so (:func:`vault.sources.not_utf8`).

Size. A conversation line is measured only when it is longer than half of
``records.MAX_RECORD_BYTES`` (its canonical form cannot be much longer
than the line): one too large for a record is refused and reported, as is
one with more messages than a record holds (:mod:`vault.sources.limits`).
Message lines gathered into a conversation are measured once gathered.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import zstandard

from vault import canonical, records, timestamps
from vault.errors import UnreadableExport
from vault.sources import (MAX_EXPORT_FILE_BYTES, ReadOptions, epoch_text, limits, not_utf8,
                           stable_id, wide_text)

DESCRIPTION = "chatvault canonical JSONL, one conversation per line (.jsonl, .jsonl.zst)"
FOLDER_RULE = "*.jsonl or *.ndjson, optionally zstd-compressed (.zst)"
RECORD_SIZE_CHECKED = True


_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.zst", ".ndjson.zst")
_READ_BUFFER = 1024 * 1024


def wants(path: Path) -> bool:
    return path.name.endswith(_SUFFIXES)


def near_miss(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_SUFFIXES):
        return None
    if ".jsonl." in name or ".ndjson." in name:
        return "only zstd compression (.zst) is read; decompress it or compress it with zstd"
    if name.endswith(".json"):
        return ("jsonl folder sources read *.jsonl and *.ndjson files; rename it if it holds "
                "one JSON object per line")
    return None


#: compressed bytes given to the decoder at once: a zstd block of 4 bytes can stand for
#: 128 KiB, so one call yields at most 64 MiB (a typical one, a few KiB)
_ZSTD_INPUT = 2048


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of concatenated zstd frames, checked to the last byte.

    ``stream_reader`` ends quietly where the input ends, inside a frame or
    not, so a file cut short read as a shorter one. Here each frame is decoded
    by its own ``decompressobj``, whose ``eof`` says the frame ended (and its
    checksum, when it has one, matched): input that ends inside a frame, no
    frame at all (an empty file), bytes that are no frame, a checksum that does
    not match, or more than ``cap`` bytes out, raise UnreadableExport naming
    the file. A truncated stream is found only at its end: a caller that must
    pass on nothing of such a file runs :func:`verify_zstd` first.
    """

    def __init__(self, inner: IO[bytes], cap: int, path: Path) -> None:
        self.inner, self.cap, self.path = inner, cap, path
        self.dctx = zstandard.ZstdDecompressor()
        self.frame: zstandard.ZstdDecompressionObj | None = None  # None between frames
        self.frames = self.count = 0
        self.pending = memoryview(b"")
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # fills the whole buffer: one small piece per call made reading lines twice as slow
        view, filled = memoryview(buffer).cast("B"), 0
        while filled < len(view):
            if not self.pending:
                if self.done:
                    break
                self.pending = memoryview(self.feed())
                continue
            n = min(len(view) - filled, len(self.pending))
            view[filled:filled + n] = self.pending[:n]
            self.pending = self.pending[n:]
            filled += n
        return filled

    def drain(self) -> int:
        """Decode to the end, keeping nothing: the decompressed size."""
        while not self.done:
            self.feed()
        return self.count

    def feed(self) -> bytes:
        """The bytes the next piece of input decodes to (b"" at the end, or mid-block)."""
        data = self.inner.read(_ZSTD_INPUT)
        if not data:
            self.done = True
            if self.frame is not None:
                raise UnreadableExport(f"zstd data cut short: the file ends inside frame "
                                       f"{self.frames + 1} (after {self.count} bytes "
                                       "decompressed); copy or compress it again",
                                       path=self.path)
            if not self.frames:
                raise UnreadableExport("empty: no zstd frame in it", path=self.path)
            return b""
        out = []
        while data:
            if self.frame is None:
                self.frame = self.dctx.decompressobj()
            try:
                out.append(self.frame.decompress(data))
            except zstandard.ZstdError as exc:
                self.done = True
                raise UnreadableExport(f"corrupt zstd data in frame {self.frames + 1} ({exc})",
                                       path=self.path) from None
            if not self.frame.eof:
                break
            data = self.frame.unused_data  # the next frame starts here
            self.frame = None
            self.frames += 1
        self.count += sum(len(piece) for piece in out)
        if self.count > self.cap:
            self.done = True
            raise UnreadableExport(f"decompresses to more than {self.cap} bytes", path=self.path)
        return out[0] if len(out) == 1 else b"".join(out)


def verify_zstd(path: Path) -> int:
    """Decompress all of ``path`` once, keeping nothing: its decompressed size.

    Raises UnreadableExport when the stream is cut short, corrupt, or larger
    than the file cap, before anything of the file is passed on.
    """
    with open(path, "rb", buffering=_READ_BUFFER) as raw:
        return _ZstdFrames(raw, MAX_EXPORT_FILE_BYTES, path).drain()


def open_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path``, decompressing ``.zst`` as a bounded, checked stream.

    A ``.zst`` stream cut short, corrupt or over the cap raises
    UnreadableExport where that is found: at its end for a truncated one,
    after the lines before it (a bundle being sealed from it is then aborted).
    """
    # large buffers: with the default 8 KiB, splitting lines took a tenth of
    # the time of sealing a canonical file
    with open(path, "rb", buffering=_READ_BUFFER) as raw:
        if path.name.endswith(".zst"):
            stream: IO[bytes] = io.BufferedReader(
                _ZstdFrames(raw, MAX_EXPORT_FILE_BYTES, path), _READ_BUFFER)
        else:
            stream = raw
        yield from stream


def read(path: Path, options: ReadOptions) -> Iterator[dict[str, Any]]:
    if path.name.endswith(".zst"):
        verify_zstd(path)  # all or nothing: see the module's docstring
    good = bad = 0
    chat = _ChatLog(path, options)
    for lineno, line in enumerate(open_lines(path), 1):
        if lineno == 1:
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]  # a UTF-8 byte order mark, as Windows editors write
            wide = wide_text(line)
            if wide is not None:  # the whole file is UTF-16 (or 32): no line of it is JSON
                raise UnreadableExport(f"not UTF-8 text: {wide}; re-save it as UTF-8",
                                       path=path)
        if not line.strip():
            continue
        try:
            conv = canonical.loads(line)
        except canonical.CanonicalError as exc:
            bad += 1
            why = not_utf8(line, " of the line") if "UTF-8" in str(exc) else None
            # a line is a conversation: one that cannot be read leaves it out
            if why is not None:
                options.problem(path, f"line {lineno}", why, said=True, refused=True)
            else:
                options.problem(path, f"line {lineno}", f"a JSON object ({exc})",
                                refused=True)
            continue
        if not isinstance(conv, dict):
            bad += 1
            options.problem(path, f"line {lineno}", "a JSON object, one conversation per line",
                            refused=True)
            continue
        if "conversation_id" not in conv and isinstance(conv.get("text"), str):
            good += chat.add(lineno, conv)
            continue
        good += 1
        # lines are records: only a long one can be too large for one (limits.fit counts)
        why = limits.excess(conv, measure=len(line) > records.MAX_RECORD_BYTES // 2)
        if why is not None:
            options.problem(path, f"line {lineno} ({conv.get('conversation_id')})",
                            f"one record at most; it has {why}: left out", refused=True)
            continue
        yield conv
    for conv in chat.conversations():
        why = limits.excess(conv)
        if why is not None:
            options.problem(path, f"conversation {conv['conversation_id']}",
                            f"one record at most; it has {why}: left out", refused=True)
            continue
        yield conv
    if bad and not good:
        raise UnreadableExport("no line could be read as a conversation", path=path)


_AUTHOR_KEYS = ("from", "sender", "author", "user")
_TIME_KEYS = ("at", "timestamp", "time")


class _ChatLog:
    """Message lines (a simple chat log) gathered into conversations."""

    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path, self.options = path, options
        self.convs: dict[str, list[dict[str, Any]]] = {}

    def add(self, lineno: int, line: dict[str, Any]) -> int:
        author = next((line[k] for k in _AUTHOR_KEYS if isinstance(line.get(k), str)), None)
        when = next((line[k] for k in _TIME_KEYS if line.get(k) is not None), None)
        at = None
        if when is not None:
            try:
                at = (epoch_text(when) if isinstance(when, (int, float))
                      else timestamps.canonicalize(str(when))[0])
            except timestamps.TimestampError as exc:
                self.options.problem(self.path, f"line {lineno}", f"a message time ({exc})")
                return 0
        key = str(line.get("conversation") or "")
        mid = str(line.get("id") or line.get("message_id") or f"line-{lineno}")
        extra = {k: v for k, v in line.items()
                 if k not in ("id", "text", "conversation", *_AUTHOR_KEYS, *_TIME_KEYS)}
        self.convs.setdefault(key, []).append(
            records.message(mid, at or "", author, line["text"], extra=extra))
        return 1

    def conversations(self) -> Iterator[dict[str, Any]]:
        for key, messages in self.convs.items():
            if any(not m["at"] for m in messages):
                mtime = epoch_text(int(self.path.stat().st_mtime))
                self.options.warn("%s: conversation %s: %d message(s) carry no time; the "
                                  "file's modification time (%s) was used for them",
                                  self.path, key or 1,
                                  sum(1 for m in messages if not m["at"]), mtime)
                for m in messages:
                    m["at"] = m["at"] or mtime
                extra: dict[str, Any] | None = {"time_source": "file modification time"}
            else:
                extra = None
            authors = list(dict.fromkeys(m["from"] for m in messages if m["from"]))
            people = [records.participant(a, "customer", name=a) for a in authors]
            cid = key or "log-" + stable_id(self.options.source, self.path.name)
            yield records.conversation(cid, min(m["at"] for m in messages), people,
                                       messages, platform="jsonl", extra=extra)


def write(conversations: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    out = Path(out_dir) / "conversations.jsonl"
    with open(out, "wb") as fh:
        for conv in conversations:
            line, _ = records.canonical_record(conv)
            fh.write(line + b"\n")
    return [out]
