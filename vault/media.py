"""Removable media as chatvault sees it: folders, safe listings, free space.

On a stick (or any folder standing for one)::

    <media>/chatvault/outbox/     bundles written by exporters (*.cvb)
    <media>/chatvault/receipts/   receipts written by vaults (*.receipt.json)
    <media>/chatvault/requests/   signed requests from online staff (*.request.json)
    <media>/chatvault/answers/    the vault's sealed answers and answer receipts

Nothing on media is trusted: listings skip symlinks, special files, names
that are not plain ``[A-Za-z0-9._-]`` and files above a size bound; every
byte is verified later by whoever reads it. In a stick's ``outbox/``,
``requests/`` and ``answers/`` (:data:`WRITES`), every entry chatvault would
not have written itself (another name, a link, a FIFO, a folder) is odd:
logged by name and listed by :func:`odd_entries`, never followed or read;
only what desktops leave on every stick (``._*``, ``.DS_Store``...) is
passed over quietly.
(Mounting and udev live in :mod:`vault.mounting`, :mod:`vault.udevwatch` and
:mod:`vault.daemon`.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
from pathlib import Path

from vault.atomic import is_temporary, kind_of, lstat_mode, media_error
from vault.errors import MediaFull, MediaMissing, MediaUnsafe

ROOT = "chatvault"
OUTBOX = "outbox"
RECEIPTS = "receipts"
REQUESTS = "requests"
ANSWERS = "answers"

log = logging.getLogger(__name__)

_SAFE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}"
_SAFE_NAME = re.compile(_SAFE)  # always fullmatch: "$" would let a final newline through
#: a temporary of chatvault's atomic writes (:class:`vault.atomic.AtomicFile`)
_OWN_TEMPORARY = re.compile(rf"\.{_SAFE}\.tmp-[A-Za-z0-9_]{{1,64}}")
#: what chatvault writes in these folders of a stick; anything else there is odd
WRITES: dict[str, tuple[str, ...]] = {OUTBOX: (".cvb",), REQUESTS: (".request.json",),
                                      ANSWERS: (".answer.json", ".cvb")}
#: what desktops leave on every stick they touch (macOS AppleDouble ``._*`` twins of each
#: file on FAT and exFAT, Finder's and Windows' folder files): passed over, only at DEBUG
_DESKTOP_LITTER = re.compile(r"\._.*|\.DS_Store|Thumbs\.db|desktop\.ini", re.DOTALL)
#: room kept free on media beyond what a write needs (file system metadata)
MARGIN = 1024 * 1024


def folder(media: Path, name: str, create: bool = False) -> Path:
    """``<media>/chatvault/<name>``; created (with parents) on request."""
    media = Path(media)
    if not media.is_dir():
        what = ("is not a folder (give the stick's mount point)" if media.exists()
                else "media folder not found; is the stick mounted?")
        raise MediaMissing(what, path=media)
    path = media / ROOT / name
    _refuse_link(media / ROOT)
    _refuse_link(path)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise media_error(exc, path) from exc
    return path


def not_a_stick(media: Path, home: Path) -> str | None:
    """Why the folder ``media`` is taken for the empty mount point of no stick, or None.

    With no stick plugged in, ``/media/chatvault`` is an empty folder of the
    machine's own disk: bundles written there would be reported as on the
    stick while the stick goes to the vault empty (and a later FUSE mount
    there fails: the folder is not empty). A folder on the file system of
    ``/`` or of the home that is no mount point itself is such a folder; a
    folder anywhere on a mounted stick is not. Missing or unreadable: None,
    said by whoever opens it.
    """
    try:
        where = os.stat(media).st_dev
        own = {os.stat("/").st_dev, os.stat(home).st_dev}
    except OSError:
        return None
    if where not in own or os.path.ismount(media):
        return None
    return ("is a folder of this machine's own disk, not a mounted stick: is the stick "
            "mounted? (to use a plain folder as the medium, set [media] mounted_only = "
            "false in the exporter's config.toml)")


def _refuse_link(path: Path) -> None:
    """A stick's ``chatvault`` folder, or one in it, that is a link or no folder: refused.

    Followed, a link there (possible on ext4) pointed the exporter's bundle
    writes and receipt removals, and the vault's receipt writes, at any folder
    of the machine the stick is inserted in.
    """
    mode = lstat_mode(path)
    if mode is not None and not stat.S_ISDIR(mode):
        raise MediaUnsafe(f"is {kind_of(mode)}, not a folder; chatvault never follows a "
                          "link on media nor writes through one: remove it from the stick",
                          path=path)


def hand_over(media_root: Path, *paths: Path, tree: bool = False) -> None:
    """Give what the vault wrote on a medium to the owner of its ``chatvault`` folder.

    The vault runs as root and writes 0600; on a file system with owners
    (ext4) the exporter, which runs as its own user, could then not read its
    receipts and answers. The folder's owner is whoever made it: the
    exporter. With ``tree``, folders are handed over with what they hold.
    Where owners cannot be set (FUSE exFAT: the mount decides) nothing is
    done.
    """
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(Path(media_root) / ROOT)
    except OSError:
        return
    if st.st_uid == 0 and st.st_gid == 0:
        return
    for path in paths:
        todo = [path]
        if tree and path.is_dir() and not path.is_symlink():
            todo += [Path(root) / n for root, dirs, files in os.walk(path)
                     for n in dirs + files]
        for item in todo:
            with contextlib.suppress(OSError):
                os.chown(item, st.st_uid, st.st_gid, follow_symlinks=False)


def safe_files(directory: Path, suffix: str, max_bytes: int,
               quiet: bool = False) -> list[Path]:
    """Regular files named ``*suffix`` in ``directory``, sorted, skipping anything odd.

    Symlinks are never followed (checked with lstat), temporary files of
    interrupted writes are passed over, names chatvault never writes and
    entries that are not regular files are logged by name and ignored
    (:func:`odd_entries` lists them; ``quiet``: at DEBUG, for a second
    listing of a folder in one run), and files above ``max_bytes`` are left
    out (the caller reports them: :func:`oversized_files`).
    """
    found, odd, _ = listing(directory, suffix, max_bytes)
    for path, why in odd:
        log.log(logging.DEBUG if quiet else logging.WARNING, "%s: ignored",
                describe_odd(path, why))
    return found


def describe_odd(path: Path, why: str) -> str:
    """An odd entry in words; a strange name is quoted (it may hold anything)."""
    where = str(path.parent)
    if not where.isprintable():  # the mount point: named by the system, but quoted all the same
        where = repr(where)
    elif _SAFE_NAME.fullmatch(path.name):
        return f"{path}: {why}"
    return f"{path.name!r} in {where}: {why}"


def odd_entries(directory: Path, suffix: str) -> list[tuple[Path, str]]:
    """Entries that :func:`safe_files` ignores, with why.

    Those named ``*suffix``, and in a stick's folders (:data:`WRITES`) every
    entry chatvault would not have written there. Nothing chatvault writes
    looks like this: a symbolic link, a FIFO or a strange name in an outbox
    is someone else's doing, so commands report them (and exit 3) instead of
    passing over them in silence.
    """
    return listing(directory, suffix, 2**63)[1]


def oversized_files(directory: Path, suffix: str, max_bytes: int) -> list[Path]:
    """Regular files named ``*suffix`` (names chatvault writes) above ``max_bytes``."""
    return listing(directory, suffix, max_bytes)[2]


def _kinds(directory: Path, suffix: str) -> tuple[tuple[str, ...], bool]:
    """The names chatvault writes in ``directory``, and whether any other name is odd."""
    if directory.parent.name == ROOT and directory.name in WRITES:
        kinds = WRITES[directory.name]
        return (kinds if suffix in kinds else (suffix, *kinds)), True
    return (suffix,), False


def listing(directory: Path, suffix: str, max_bytes: int
            ) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """(files named ``*suffix`` to take, odd entries with why, files above ``max_bytes``).

    Nothing is logged (:func:`safe_files` does) and nothing is opened: each
    entry is judged by its name and ``lstat``. Names of the folder's other
    kinds (a ``.cvb`` beside answers) are judged too but not taken.
    """
    if not directory.is_dir() or directory.is_symlink():
        return [], [], []
    kinds, strict = _kinds(directory, suffix)
    found: list[Path] = []
    odd: list[tuple[Path, str]] = []
    big: list[Path] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise media_error(exc, directory) from exc
    for name in names:
        path = directory / name
        if strict and _DESKTOP_LITTER.fullmatch(name):
            log.debug("%s: a desktop's own file, passed over", path)
            continue
        if is_temporary(name):
            if strict and not _OWN_TEMPORARY.fullmatch(name):
                odd.append((path, "a name chatvault never writes"))
            elif strict and not _is_regular(path):
                odd.append((path, "not a regular file (chatvault's temporaries are)"))
            continue
        kind = next((k for k in kinds if name.endswith(k)), None)
        if kind is None:
            if strict:
                odd.append((path, "a name chatvault never writes"))
            continue
        if not _SAFE_NAME.fullmatch(name):
            odd.append((path, "a name chatvault never writes"))
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            odd.append((path, f"{_kind(st.st_mode)}, not a regular file"))
        elif kind != suffix:
            continue
        elif st.st_size <= max_bytes:
            found.append(path)
        else:
            big.append(path)
    return found, odd, big


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return True  # gone meanwhile: nothing left to report


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "a special file"


def free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError as exc:
        raise media_error(exc, path) from exc


#: what to do when the vault's own disk (staging) is full, not the stick
VAULT_DISK_FULL = ("the vault's own disk is full: free space there ('chatvault vault status' "
                   "shows it), then ingest the stick again")


def ensure_space(path: Path, needed: int,
                 remedy: str = "make room (or use another stick) and try again") -> None:
    """Refuse before writing when ``needed`` bytes (plus a margin) will not fit."""
    free = free_bytes(path)
    if free < needed + MARGIN:
        raise MediaFull(f"{needed:,} bytes needed and {MARGIN:,} kept spare, {free:,} free: "
                        f"{remedy}", path=path)
