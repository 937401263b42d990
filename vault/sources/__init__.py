"""Readers: one module per platform export format, each turning files into records.

A reader module defines:

``DESCRIPTION``
    one line for ``chatvault sources formats``.
``wants(path) -> bool``
    whether a file inside a folder given as the source path belongs to this
    format (folders are walked in sorted order; other files are ignored).
``read(path, options) -> Iterator[dict]``
    yields conversations in the shape :mod:`vault.records` documents (not yet
    validated: :func:`read` validates each one). A malformed entry is reported
    through ``options.problem(...)`` with the file, the position and what was
    expected, and reading goes on. A file in which nothing can be read in this
    format raises :class:`~vault.errors.UnreadableExport`.

Optionally ``write(conversations, out_dir) -> list[Path]`` writes records back
in the platform's own format (used by ``restore open --format native``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from vault import records
from vault.errors import InvalidRecord, UnreadableExport, UsageError

log = logging.getLogger(__name__)

#: format name -> module in this package
FORMATS: dict[str, str] = {
    "jsonl": "jsonl",
    "slack": "slack",
    "botframework": "botframework",
    "whatsapp": "whatsapp",
    "telegram": "telegram",
    "messenger": "messenger",
    "rasa": "rasa",
    "intercom": "intercom",
    "freshdesk": "freshdesk",
}

MAX_EXPORT_FILE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Problem:
    """One malformed entry in an export: reported, skipped, never fatal alone."""

    path: str
    position: str
    expected: str

    def __str__(self) -> str:
        return f"{self.path}: {self.position}: {self.expected}"


@dataclass
class ReadOptions:
    source: str = "default"
    timezone: str | None = None
    phone_region: str | None = None
    problems: list[Problem] = field(default_factory=list)
    on_problem: Callable[[Problem], None] | None = None

    def problem(self, path: Path | str, position: str, expected: str) -> None:
        item = Problem(str(path), position, expected)
        self.problems.append(item)
        log.warning("%s", item)
        if self.on_problem:
            self.on_problem(item)


def module(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"vault.sources.{FORMATS[fmt]}")


def describe() -> list[tuple[str, str, bool]]:
    """(name, description, can write natively) for every format."""
    out = []
    for name in FORMATS:
        mod = module(name)
        out.append((name, getattr(mod, "DESCRIPTION", ""), hasattr(mod, "write")))
    return out


def export_files(path: Path, fmt: str) -> list[Path]:
    """The files of ``path`` (a file, or a folder walked in order) for ``fmt``."""
    mod = module(fmt)
    if not path.exists():
        raise UnreadableExport("no such file or folder", path=path)
    if path.is_file():
        return [path]
    if getattr(mod, "FOLDER_IS_EXPORT", False) and mod.wants(path):
        return [path]
    found = []
    for item in sorted(path.rglob("*")):
        if item.is_symlink() or not item.is_file():
            continue
        if mod.wants(item):
            found.append(item)
    return found


def read(path: Path, fmt: str, options: ReadOptions) -> Iterator[dict[str, Any]]:
    """Every conversation in ``path``, validated, with ``source`` filled in.

    A conversation that fails validation is reported as a problem and left
    out; the rest goes on. Files that hold nothing readable raise.
    """
    mod = module(fmt)
    for item in export_files(Path(path), fmt):
        if item.is_file() and item.stat().st_size > MAX_EXPORT_FILE_BYTES:
            raise UnreadableExport(f"larger than {MAX_EXPORT_FILE_BYTES} bytes", path=item)
        yield from _validated(mod.read(item, options), item, options)


def _validated(convs: Iterator[dict[str, Any]], item: Path,
               options: ReadOptions) -> Iterator[dict[str, Any]]:
    for n, conv in enumerate(convs, 1):
        if isinstance(conv, dict) and not conv.get("source"):
            conv["source"] = options.source
        try:
            records.validate(conv, f"{item}: conversation {n}")
        except InvalidRecord as exc:
            options.problem(item, f"conversation {n}", exc.detail)
            continue
        yield conv


# -- helpers shared by the readers ------------------------------------------------

#: a whole-document JSON export is parsed in memory: bounded well below the file cap
MAX_JSON_BYTES = 512 * 1024**2
#: an attachment file hashed from an export folder or archive
MAX_ATTACHMENT_BYTES = 2 * 1024**3


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (untrusted shapes)."""
    return value if isinstance(value, dict) else {}


def load_json(path: Path, cap: int = MAX_JSON_BYTES) -> Any:
    """Parse a whole JSON export file, refusing files over ``cap`` bytes."""
    size = path.stat().st_size
    if size > cap:
        raise UnreadableExport(f"larger than {cap} bytes, too big to parse as one JSON "
                               "document", path=path)
    with open(path, "rb") as fh:
        data = fh.read(cap + 1)
    return parse_json(data, path)


def parse_json(data: bytes, path: Path | str) -> Any:
    """Parse JSON bytes (a leading UTF-8 BOM allowed); UnreadableExport when it is not JSON."""
    from vault import canonical

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return canonical.loads(data)
    except canonical.CanonicalError as exc:
        raise UnreadableExport(f"not valid JSON ({exc})", path=path) from None


def epoch_text(value: Any, unit: int = 1) -> str:
    """Canonical UTC text of a Unix time given in seconds (``unit=1``) or ms (1000).

    Works on the decimal digits, not on a float, so ``"1681413317.397479"``
    keeps its six fractional digits exactly. Raises TimestampError.
    """
    from datetime import datetime, timedelta
    from decimal import Decimal, InvalidOperation

    from vault import timestamps

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise timestamps.TimestampError("expected a Unix time (number or digits)")
    try:
        seconds = Decimal(str(value)) / unit
    except InvalidOperation:
        raise timestamps.TimestampError(f"not a Unix time: {str(value)[:40]!r}") from None
    if not seconds.is_finite() or abs(seconds) > 253402300799:
        raise timestamps.TimestampError(f"Unix time out of range: {str(value)[:40]!r}")
    micros = int(seconds.scaleb(6).to_integral_value())
    moment = datetime(1970, 1, 1, tzinfo=timestamps.UTC) + timedelta(microseconds=micros)
    return timestamps.format_utc(moment)


def stable_id(*parts: str) -> str:
    """A short id derived from ``parts``: the same parts always give the same id."""
    import hashlib

    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:20]


def digest_stream(stream: Any, cap: int = MAX_ATTACHMENT_BYTES) -> tuple[str, int] | None:
    """(sha256, size) of a binary stream, or None when it holds more than ``cap`` bytes."""
    import hashlib

    h, size = hashlib.sha256(), 0
    while chunk := stream.read(1024 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        h.update(chunk)
    return h.hexdigest(), size


def local_file_digest(bases: list[Path], relative: str) -> tuple[str, int] | None:
    """(sha256, size) of an attachment an export names by relative path, if present.

    The name is untrusted: absolute paths, ``..`` and symlinks are refused, and
    each candidate folder in ``bases`` is tried in order.
    """
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        return None
    for base in bases:
        candidate = base / rel
        try:
            if candidate.is_symlink() or not candidate.is_file():
                continue
            with open(candidate, "rb") as fh:
                return digest_stream(fh)
        except OSError:
            continue
    return None


def html_to_text(markup: str) -> str:
    """A plain-text rendering of an HTML message body (block elements become lines)."""
    from html.parser import HTMLParser

    blocks = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "pre", "ul", "ol", "table"}

    class _Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in ("script", "style"):
                self.skip += 1
            elif tag in blocks:
                self.parts.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style"):
                self.skip = max(0, self.skip - 1)
            elif tag in blocks:
                self.parts.append("\n")

        def handle_data(self, data: str) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = text.split("\n")
    # collapse the runs of empty lines that nested blocks leave behind
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1].strip()):
            out.append(line)
    return "\n".join(out).strip("\n")
