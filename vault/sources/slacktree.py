"""The files of a Slack export, zipped or unpacked, and which of them hold days.

:class:`ExportTree` lists an export's members by name (a zip member by its
name in the archive, a file of an unpacked export by the name its folder
walk found) and loads each as JSON, bounded one by one and as a whole.
:func:`looks_like_day` tells a member that may hold messages but is not
named ``channel/YYYY-MM-DD.json`` from the files Slack puts next to days
that hold none: :mod:`vault.sources.slack` reports the first kind, never
passes it over.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from vault.atomic import kind_of
from vault.errors import Oversize, UnreadableExport
from vault.sources import MAX_EXPORT_FILE_BYTES, MAX_JSON_BYTES, open_regular, parse_json

META_FILE = "chatvault.json"
MAX_MEMBERS = 200_000

DAY_FILE = re.compile(r"^([^/]+)/(\d{4}-\d{2}-\d{2})\.json$")
_DAY_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\b.*\.json$")  # "2024-03-01 (1).json" too
#: files of an export's root, holding no messages (in a folder: a second export's)
_ROOT_FILES = {"users.json", "channels.json", "groups.json", "mpims.json", "dms.json",
               "integration_logs.json", "canvases.json", "org_users.json", META_FILE}
#: what Slack (and slackdump) put next to day files or in folders of their own
_NOT_DAYS = {"canvas_in_the_conversation.json"}
_STORES = {"__uploads", "canvases"}
_CHANNEL_STORES = {"attachments"}


class ExportTree:
    """The files of an export, zipped or unpacked, named relative to its root.

    Member names are names, never file paths: a zip member is opened by its
    name in the archive, a file of an unpacked export by the name its folder
    walk found. What is not read but looks like data is kept in ``skipped``
    as (position, reason, refused) for :func:`vault.sources.slack.read` to report: a member outside
    the export's folder, a name the zip holds twice, a link, pipe or device
    (never followed nor opened), a folder that cannot be listed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.total = 0  # bytes read so far: an export is bounded as a whole too
        self.skipped: list[tuple[str, str, bool]] = []
        self.prefix = ""
        self.file: BinaryIO | None = None
        if path.is_dir():
            self.names: list[str] = []
            self._walk(path, 0)
            return
        self.file = open_regular(path)  # a FIFO given as a zip is refused, never waited on
        try:
            self.zip = zipfile.ZipFile(self.file)
        except (zipfile.BadZipFile, OSError) as exc:
            self.file.close()
            raise UnreadableExport(f"not a zip archive ({exc})", path=path) from None
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnreadableExport(f"more than {MAX_MEMBERS} members", path=path)
        names = [i.filename for i in infos if not i.is_dir() and not _hidden(i.filename)]
        roots = sorted((n for n in names if n.rsplit("/", 1)[-1] in ("users.json",
                                                                     "channels.json")),
                       key=lambda n: n.count("/"))
        self.prefix = roots[0][: -len(roots[0].rsplit("/", 1)[-1])] if roots else ""
        counts = Counter(names)
        self.names = []
        for n in dict.fromkeys(names):  # each name once, in zip order
            if not n.startswith(self.prefix):
                if looks_like_day(n):
                    self.skipped.append((f"skipped {shown(n)}", "outside the export's "
                                         f"folder ({self.prefix}): not read; give each "
                                         "export as its own zip", True))
                continue
            name = n[len(self.prefix):]
            self.names.append(name)
            if counts[n] > 1:
                day = looks_like_day(name) or DAY_FILE.match(name) is not None
                self.skipped.append((shown(name), f"the zip holds {counts[n]} members of "
                                     "this name: only the last is read, the others are "
                                     "left out", day))

    def _walk(self, folder: Path, depth: int) -> None:
        """Add the regular files under ``folder``; links and pipes are only named."""
        rel = folder.relative_to(self.path).as_posix() + "/"
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if depth == 0:
                raise UnreadableExport(f"cannot be read ({exc.strerror or exc})",
                                       path=folder) from None
            self.skipped.append((f"skipped {rel}", "a folder that cannot be read "
                                 f"({exc.strerror or exc}): nothing in it was read", True))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # macOS's ._ twins, .DS_Store: as the folder walk passes them over
            if len(self.names) + len(self.skipped) >= MAX_MEMBERS:
                raise UnreadableExport(f"more than {MAX_MEMBERS} files", path=self.path)
            item = folder / entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            name = item.relative_to(self.path).as_posix()
            if stat.S_ISDIR(mode):
                self._walk(item, depth + 1)
            elif stat.S_ISREG(mode):
                self.names.append(name)
            elif name.lower().endswith(".json") or depth == 0:
                # at the top, a link may stand for a channel's folder: left out too
                day = (looks_like_day(name) or DAY_FILE.match(name) is not None
                       or not name.lower().endswith(".json"))
                self.skipped.append((f"skipped {name}", f"{kind_of(mode)}, not a regular "
                                     "file or folder: not read (links are never followed, "
                                     "pipes and devices never opened); copy it itself into "
                                     "the export", day))

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()
        if self.file is not None:
            self.file.close()

    def load(self, name: str) -> Any:
        """Parse one JSON member; UnreadableExport when too big or not JSON."""
        where = f"{self.path}!{name}" if self.zip else self.path / name
        if self.zip is None:
            with open_regular(self.path / name, follow=False) as fh:
                data = fh.read(MAX_JSON_BYTES + 1)
        else:
            with self.zip.open(self.prefix + name) as fh:
                data = fh.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise UnreadableExport(f"larger than {MAX_JSON_BYTES} bytes", path=where)
        self.total += len(data)
        if self.total > MAX_EXPORT_FILE_BYTES:
            raise Oversize(f"export holds more than {MAX_EXPORT_FILE_BYTES} bytes of JSON",
                           path=self.path)
        return parse_json(data, where)


def _hidden(name: str) -> bool:
    """A zip member under a hidden folder or named ``.x`` (``__MACOSX/``, ``._`` twins)."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") and p not in (".", "..")
                                         for p in parts)


def looks_like_day(name: str) -> bool:
    """Whether a member not named ``channel/YYYY-MM-DD.json`` may still hold a day.

    A ``.json`` inside a folder (``/`` or Windows' ``\\``), unless it is a file
    Slack puts there that holds no messages: a list of the export's root in
    another folder (a second export), a channel's canvas, an attachment store.
    A name ending in a date is a day file whatever its folders.
    """
    parts = re.split(r"[/\\]", name)
    base = parts[-1].lower()
    if len(parts) < 2 or not base.endswith(".json") or DAY_FILE.match(name):
        return False
    if _DAY_NAME.match(base):
        return True
    return not (base in _ROOT_FILES or base in _NOT_DAYS
                or parts[0].lower() in _STORES
                or (len(parts) > 2 and parts[1].lower() in _CHANNEL_STORES))


def shown(name: str) -> str:
    """A member name for a message: as written when printable, else quoted; bounded."""
    shown = name if name.isprintable() else repr(name)
    return shown if len(shown) <= 200 else shown[:200] + "..."

