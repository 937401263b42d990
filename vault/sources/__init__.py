"""Readers: one module per platform export format, each turning files into records.

A reader module defines:

``DESCRIPTION``
    one line for ``chatvault sources formats``.
``FOLDER_RULE``
    which files of a folder it reads, in words ("message_N.json"), for the
    message that names a folder holding none of them.
``wants(path) -> bool``
    whether a file inside a folder given as the source path belongs to this
    format (folders are walked in sorted order).
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
that reads (once each, on stderr); the log has them at DEBUG only. A
problem that leaves data out (a conversation refused, a file skipped or
unreadable) is marked ``refused``: ``sources convert`` then exits 3.
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


def export_files(path: Path, fmt: str, options: ReadOptions | None = None) -> list[Path]:
    """The files of ``path`` for ``fmt``: the file itself, or what a folder holds.

    A folder is walked in sorted order, symlinks not followed (one named
    like the format's data is logged as a warning), hidden files
    and folders (``.name``: macOS's ``._*`` twins on exFAT sticks, temporary
    files, ``.git``) passed over. A file the
    reader does not take but that looks like its data is reported through
    ``options`` (when given) with the reader's reason. A folder holding
    files of which none is taken raises UnreadableExport naming the rule and
    what it found; an empty folder is no error (nothing exported yet).
    """
    mod = module(fmt)
    if not path.exists():
        raise UnreadableExport("no such file or folder", path=path)
    if path.is_file():
        return [path]
    nested = getattr(mod, "FOLDER_IS_EXPORT", False)
    if nested and mod.wants(path):
        return [path]

    taken: list[Path] = []
    seen: list[str] = []
    near_miss = getattr(mod, "near_miss", None)
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if any(root in item.parents for root in taken):
            continue
        if item.is_symlink():
            if mod.wants(item):
                log.warning("%s: a symbolic link: not followed (copy the file itself into "
                            "the export folder to have it read)", item)
            continue
        if item.is_dir():
            if nested and mod.wants(item):
                taken.append(item)  # an unpacked export inside the folder
            continue
        if not item.is_file():
            continue
        seen.append(rel.as_posix())
        if mod.wants(item):
            taken.append(item)
            continue
        why = near_miss(item) if near_miss else None
        if why and options is not None:
            options.problem(path, f"skipped {seen[-1]}", why, refused=True, said=True)
    if seen and not taken:
        listed = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
        raise UnreadableExport(f"no file here is named like a {fmt} export "
                               f"({getattr(mod, 'FOLDER_RULE', 'see sources formats')}); "
                               f"found: {listed}", path=path)
    return taken


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
                    log.warning("%s: %s exports write local wall-clock times and no timezone "
                                "is set: they are read as UTC (set the source's timezone, or "
                                "--timezone)", path, fmt)
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
    try:
        records.validate(conv, f"{item}: conversation {n}")
    except InvalidRecord as exc:
        cid = conv.get("conversation_id") if isinstance(conv, dict) else None
        where = f"conversation {n}" + (f" ({cid})" if isinstance(cid, str) else "")
        options.problem(item, where, f"{exc.detail}: left out", refused=True, said=True)
        return None
    return conv


# -- helpers shared by the readers ------------------------------------------------

#: a whole-document JSON export is parsed in memory: bounded well below the file cap
MAX_JSON_BYTES = 512 * 1024**2
#: an attachment file hashed from an export folder or archive
MAX_ATTACHMENT_BYTES = 2 * 1024**3


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
    size = path.stat().st_size
    if size > cap:
        raise UnreadableExport(f"larger than {cap} bytes, too big to parse as one JSON "
                               "document", path=path)
    with open(path, "rb") as fh:
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
    wide = wide_text(data)
    if wide is not None:  # never JSON: NUL is no JSON character
        raise UnreadableExport(f"not UTF-8 text: {wide}; {_RESAVE}", path=path)
    try:
        return canonical.loads(data)
    except canonical.CanonicalError as exc:
        why = not_utf8(data) if "UTF-8" in str(exc) else None
        raise UnreadableExport(why or f"not valid JSON ({exc})", path=path) from None


# -- text encodings -----------------------------------------------------------------

_RESAVE = "re-save it as UTF-8"
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def wide_text(data: bytes) -> str | None:
    """How ``data`` shows it is UTF-16 or UTF-32 text, or None when it does not.

    A byte order mark says so; without one, the first 64 bytes having a 0 in
    every other place (ASCII in UTF-16) do. Such bytes may still decode as
    UTF-8 (NUL is valid UTF-8), so text readers check this first.
    """
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return f"it starts with a {name} byte order mark, so it looks like {name}"
    head = data[:64]
    pairs = len(head) // 2
    if pairs < 2:
        return None
    low = sum(1 for i in range(0, 2 * pairs, 2) if head[i] and not head[i + 1])
    high = sum(1 for i in range(0, 2 * pairs, 2) if not head[i] and head[i + 1])
    if max(low, high) * 4 >= pairs * 3:
        return "every other byte is 0, so it looks like UTF-16 without a byte order mark"
    return None


def not_utf8(data: bytes, where: str = "") -> str | None:
    """Why ``data`` is not UTF-8 text, in words with what to do; None when it is.

    ``where`` follows the byte offset ("of the line"). Used by every reader
    that decodes text: :func:`parse_json` (the JSON formats), :func:`decode_text`
    (WhatsApp) and the JSONL reader, line by line.
    """
    wide = wide_text(data)
    if wide is not None:
        return f"not UTF-8 text: {wide}; {_RESAVE}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return (f"not UTF-8 text: byte {exc.start}{where} (0x{byte:02X}) is not UTF-8 (the "
                f"file may be Latin-1 or Windows-1252, or not text); {_RESAVE}")
    return None


def decode_text(data: bytes, path: Path | str) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); UnreadableExport saying why not."""
    wide = wide_text(data)
    if wide is not None:
        raise UnreadableExport(f"not UTF-8 text: {wide}; {_RESAVE}", path=path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableExport(not_utf8(data) or "not UTF-8 text", path=path) from None


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


#: characters of a too-long platform id kept readable in the id it is filed under
_LONG_ID_HEAD = 64


def record_id(value: str) -> str:
    """``value`` as a record id: itself when it fits, else a stable shortened form.

    A record id holds at most ``records.MAX_ID_CHARS`` characters, and one
    longer id refuses its whole conversation. A platform id over that (an
    odd export, a tool that wrote a blob into ``user``) is filed under its
    first 64 characters, ``…`` and the SHA-256 of the whole id: every mention
    of one id gives the same shortened id, and two ids that differ anywhere
    give two. The reader keeps the whole id in ``platform_ids`` and reports it
    (:func:`long_id_problem`).
    """
    import hashlib

    if len(value) <= records.MAX_ID_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[:_LONG_ID_HEAD]}\u2026sha256:{digest}"


def long_id_problem(options: ReadOptions, path: Path | str, position: str, what: str,
                    value: str, kept_in: str) -> None:
    """Report that ``value`` was too long for an id and what it is filed under."""
    options.problem(path, position, f"{what} of {len(value):,} characters, more than the "
                    f"{records.MAX_ID_CHARS:,} an id holds: filed under {record_id(value)!r} "
                    f"(its first {_LONG_ID_HEAD} characters and SHA-256), the whole id kept "
                    f"in {kept_in}", said=True)


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
