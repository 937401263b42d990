"""Readers: one module per platform export format, each turning files into records.

A reader module defines:

``DESCRIPTION``
    one line for ``chatvault sources formats``.
``FOLDER_RULE``
    which files of a folder it reads, in words ("message_N.json"), for the
    message that names a folder holding none of them.
``wants(path) -> bool``
    whether a file inside a folder given as the source path belongs to this
    format (folders are walked in sorted order). Judged by the name (or a
    folder's listing), never by opening: it is asked of links and pipes too,
    so that one named like the format's data is reported, not passed over.
``read(path, options) -> Iterator[dict]``
    yields conversations in the shape :mod:`vault.records` documents (not yet
    validated: :func:`read` validates each one). A malformed entry is reported
    through ``options.problem(...)`` with the file, the position and what was
    expected, and reading goes on. A file in which nothing can be read in this
    format raises :class:`~vault.errors.UnreadableExport`.

Optionally:

``near_miss(path) -> str | None``
    for a file of a folder that ``wants`` does not take but that looks like
    this format's data, why it is not read and what to do: reported as a
    problem, never skipped in silence. Files that are plainly something
    else (media next to a chat, an export's other JSON) are not near misses.
``SPLIT_BY_MONTH = True``
    a conversation too large for one record is split into monthly parts
    instead of refused (:mod:`vault.sources.limits`).
``RECORD_SIZE_CHECKED = True``
    the reader checks the byte size of its records itself (JSONL lines),
    so :func:`read` does not serialise each one to measure it.
``write(conversations, out_dir) -> list[Path]``
    writes records back in the platform's own format (used by
    ``restore open --format native``).

Problems are collected in :class:`ReadOptions` and shown by the command
that reads (once each, on stderr); the log has them at DEBUG only. Any
problem makes ``sources convert``, ``sources preview`` and ``export run``
exit 3; one that leaves more than an entry out (a conversation refused, a
file skipped or unreadable) is also marked ``refused``, which convert
counts apart.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from vault import records
from vault.errors import InvalidRecord, UnreadableExport, UsageError

# shared by the readers, kept in their own modules (imported here for the readers)
from vault.sources.recordids import (  # noqa: E402,F401
    long_id_problem, record_id, stable_id, unique_id)
from vault.sources.textcodec import decode_text, not_utf8, wide_text  # noqa: E402,F401
from vault.sources.attachfiles import (  # noqa: E402,F401
    MAX_ATTACHMENT_BYTES, digest_stream, local_file_digest)
from vault.sources.exportfiles import export_files, open_regular  # noqa: E402,F401

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
    """One malformed entry in an export: reported and skipped; the rest is read."""

    path: str
    position: str
    expected: str  # what was expected there, unless ``said``
    refused: bool = False  # data was left out: a conversation, a part or a whole file
    said: bool = False  # ``expected`` is a whole statement (a reader's or parser's reason)

    def __str__(self) -> str:
        what = self.expected if self.said else f"expected {self.expected}"
        return f"{self.path}: {self.position}: {what}"


@dataclass
class ReadOptions:
    source: str = "default"
    timezone: str | None = None
    phone_region: str | None = None
    problems: list[Problem] = field(default_factory=list)
    on_problem: Callable[[Problem], None] | None = None
    #: a second reading of the same files (export run's sealing pass, convert's
    #: first): the warnings were given by the other reading
    quiet: bool = False

    def warn(self, message: str, *args: Any) -> None:
        """A warning about the export as a whole (not a malformed entry: see problem)."""
        if not self.quiet:
            log.warning(message, *args)

    def problem(self, path: Path | str, position: str, expected: str, *,
                refused: bool = False, said: bool = False) -> None:
        item = Problem(str(path), position, expected, refused, said)
        self.problems.append(item)
        # the command shows each problem once; the log keeps them for --debug runs only
        log.debug("%s", item)
        if self.on_problem:
            self.on_problem(item)

    @property
    def refusals(self) -> int:
        """How many problems left data out."""
        return sum(1 for p in self.problems if p.refused)


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



def read(path: Path, fmt: str, options: ReadOptions) -> Iterator[dict[str, Any]]:
    """Every conversation in ``path``, validated, with ``source`` filled in.

    A conversation that fails validation, or is too large for one record and
    cannot be split, is reported as a refused problem and left out; the rest
    goes on. A single file that holds nothing readable raises; in a folder,
    such a file is reported and the others are read (the folder raises only
    when none of its files could be read).
    """
    from vault.sources import limits

    mod = module(fmt)
    path = Path(path)
    items = export_files(path, fmt, options)
    in_folder = path.is_dir() and items != [path]
    split = getattr(mod, "SPLIT_BY_MONTH", False)
    measure = not getattr(mod, "RECORD_SIZE_CHECKED", False)
    # said once something was read: a file that is no such export at all is refused
    # without a warning about times it does not hold
    warn_utc = getattr(mod, "LOCAL_TIMES", False) and options.timezone is None
    failed = read_any = 0
    for item in items:
        try:
            if item.is_file() and item.stat().st_size > MAX_EXPORT_FILE_BYTES:
                raise UnreadableExport(f"larger than {MAX_EXPORT_FILE_BYTES} bytes", path=item)
            for n, conv in enumerate(mod.read(item, options), 1):
                read_any += 1
                if warn_utc:
                    warn_utc = False
                    options.warn("%s: %s exports write local wall-clock times and no "
                                 "timezone is set: they are read as UTC (set the source's "
                                 "timezone, or --timezone)", path, fmt)
                if isinstance(conv, dict):
                    _file_under(conv, options.source)  # before measuring: in the record
                for part in limits.fit(conv, item, options, split=split, measure=measure):
                    checked = _validated(part, item, n, options)
                    if checked is not None:
                        yield checked
        except UnreadableExport as exc:
            if not in_folder:
                raise
            failed += 1
            options.problem(item, "not read", exc.detail, refused=True, said=True)
    if failed and not read_any:
        raise UnreadableExport(f"none of its {failed} file(s) could be read as {fmt}",
                               path=path)


def _file_under(conv: dict[str, Any], source: str) -> None:
    """Name the configured source in ``conv``: the bundle's header files it there.

    A canonical record may already name a source (a restore opened online,
    another system's export); the operator's configured name wins, as the
    vault files every record under its bundle's source, and a different name
    the record carried is kept in ``extra.source_in_export``.
    """
    named = conv.get("source")
    if named and named != source:
        extra = conv.get("extra")
        if extra is None:
            conv["extra"] = extra = {}
        if isinstance(extra, dict):
            extra.setdefault("source_in_export", named)
    conv["source"] = source


def _validated(conv: Any, item: Path, n: int, options: ReadOptions) -> dict[str, Any] | None:
    context = f"{item}: conversation {n}"
    try:
        records.validate(conv, context)
    except InvalidRecord as exc:
        cid = conv.get("conversation_id") if isinstance(conv, dict) else None
        where = f"conversation {n}" + (f" ({cid})" if isinstance(cid, str) else "")
        # the problem names file and place itself: the field and the fault are enough
        detail = exc.detail.removeprefix(f"{context}: ")
        options.problem(item, where, f"{detail}: left out", refused=True, said=True)
        return None
    return conv


# -- helpers shared by the readers ------------------------------------------------

#: a whole-document JSON export is parsed in memory: bounded well below the file cap
MAX_JSON_BYTES = 512 * 1024**2


def capped(items: list[Any], cap: int, path: Path | str, what: str,
           options: ReadOptions) -> list[Any]:
    """The first ``cap`` of ``items``; any cut is reported as refused, never silent."""
    if len(items) > cap:
        options.problem(path, what, f"at most {cap:,} are read; {len(items) - cap:,} of "
                        f"{len(items):,} were left out", refused=True, said=True)
        return items[:cap]
    return items


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (untrusted shapes)."""
    return value if isinstance(value, dict) else {}


def load_json(path: Path, cap: int = MAX_JSON_BYTES) -> Any:
    """Parse a whole JSON export file, refusing files over ``cap`` bytes."""
    with open_regular(path) as fh:
        if os.fstat(fh.fileno()).st_size > cap:
            raise UnreadableExport(f"larger than {cap} bytes, too big to parse as one JSON "
                                   "document", path=path)
        data = fh.read(cap + 1)
    return parse_json(data, path)


def parse_json(data: bytes, path: Path | str) -> Any:
    """Parse JSON bytes (a leading UTF-8 BOM allowed); UnreadableExport when it is not JSON.

    Bytes that are not UTF-8 are said to be so (:func:`not_utf8`), not with the
    parser's "str is not valid UTF-8: surrogates not allowed".
    """
    from vault import canonical

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if wide_text(data) is not None:  # never JSON: NUL is no JSON character
        raise UnreadableExport(not_utf8(data) or "not UTF-8 text", path=path)
    try:
        return canonical.loads(data)
    except canonical.CanonicalError as exc:
        why = not_utf8(data) if "UTF-8" in str(exc) else None
        raise UnreadableExport(why or f"not valid JSON ({exc})", path=path) from None


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
