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
