"""Finding an export's files, and opening one without following or waiting on it.

:func:`export_files` turns a source path into the files its reader reads: the
path itself, or what a folder holds that the format ``wants``. Links are never
followed there, pipes and devices never opened; what is left out that looks
like the format's data is reported, never passed over in silence.
:func:`open_regular` opens one such file, refusing anything but a regular
file before a byte is read. Both are importable from :mod:`vault.sources`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vault.errors import UnreadableExport

if TYPE_CHECKING:
    from vault.sources import ReadOptions


def export_files(path: Path, fmt: str, options: ReadOptions | None = None) -> list[Path]:
    """The files of ``path`` for ``fmt``: the file itself, or what a folder holds.

    ``path`` itself (a configured path may be a symbolic link) must be a file or
    a folder: a FIFO, device or socket is refused by name, never opened. A
    folder is walked in sorted order, hidden files and folders (``.name``:
    macOS's ``._*`` twins on exFAT sticks, temporary files, ``.git``) passed
    over. Symbolic links are never followed, nor pipes, devices or sockets
    opened: one named like the format's data, and a subfolder that cannot be
    listed, is reported through ``options`` (when given) as refused. A file
    the reader does not take but that looks like its data is reported so too,
    with the reader's reason. A folder holding files of which none is taken
    raises UnreadableExport naming the rule and what it found; an empty folder
    is no error (nothing exported yet).
    """
    from vault.atomic import kind_of
    from vault.sources import module

    mod = module(fmt)
    mode = _mode(path)
    if stat.S_ISREG(mode):
        return [path]
    if not stat.S_ISDIR(mode):
        raise UnreadableExport(f"is {kind_of(mode)}, not a file or a folder of export files: "
                               "nothing was read from it", path=path)
    nested = getattr(mod, "FOLDER_IS_EXPORT", False)
    if nested and mod.wants(path):
        return [path]

    taken: list[Path] = []
    seen: list[str] = []
    odd = 0  # entries named like the data that are no regular file
    near_miss = getattr(mod, "near_miss", None)

    def skipped(rel: str, why: str) -> None:
        if options is not None:
            options.problem(path, f"skipped {rel}", why, refused=True, said=True)

    def visit(folder: Path) -> None:
        nonlocal odd
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if folder == path:
                raise UnreadableExport(f"cannot be read ({exc.strerror or exc})",
                                       path=path) from None
            skipped(folder.relative_to(path).as_posix() + "/", "a folder that cannot be "
                    f"read ({exc.strerror or exc}): nothing in it was read")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            item = folder / entry.name
            try:
                kind = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # gone since the listing
            rel = item.relative_to(path).as_posix()
            if stat.S_ISDIR(kind):
                if nested and mod.wants(item):
                    taken.append(item)  # an unpacked export inside the folder
                else:
                    visit(item)
            elif stat.S_ISREG(kind):
                seen.append(rel)
                if mod.wants(item):
                    taken.append(item)
                    continue
                why = near_miss(item) if near_miss else None
                if why:
                    skipped(rel, why)
            elif mod.wants(item):  # wants() judges names (and folders), never opens
                odd += 1
                skipped(rel, f"{kind_of(kind)}, not a regular file or folder: not read "
                        "(links are never followed, pipes and devices never opened); copy "
                        "it itself into the export folder to have it read")

    visit(path)
    if seen and not taken and not odd:
        listed = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
        raise UnreadableExport(f"no file here is named like a {fmt} export "
                               f"({getattr(mod, 'FOLDER_RULE', 'see sources formats')}); "
                               f"found: {listed}", path=path)
    return taken


def _mode(path: Path) -> int:
    """``st_mode`` of a source path (followed when a link); UnreadableExport if none."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UnreadableExport("no such file or folder", path=path) from None
    except OSError as exc:
        raise UnreadableExport(f"cannot be read ({exc.strerror or exc})", path=path) from None


def open_regular(path: Path | str, *, follow: bool = True) -> BinaryIO:
    """Open an export file for reading; a FIFO, device or folder is refused, never waited on.

    ``O_NONBLOCK`` keeps opening a FIFO from blocking until a writer comes;
    the descriptor is made blocking again once it is known to be a file.
    ``follow=False`` refuses a symbolic link too (a file a folder walk found
    regular, replaced since).
    """
    from vault.atomic import kind_of

    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags if follow else flags | os.O_NOFOLLOW)
    except OSError as exc:
        if follow or exc.errno != errno.ELOOP:
            raise
        raise UnreadableExport("is a symbolic link, not a regular file: never followed",
                               path=path) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableExport(f"is {kind_of(mode)}, not a regular file: nothing was "
                                   "read from it", path=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

