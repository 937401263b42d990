"""The atomic writer: only regular files are replaced, and a full disk names the file.

Device nodes are made in ``tmp_path`` (the tests run as root); the real
``/dev`` is never touched.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
from pathlib import Path
from typing import Callable

import pytest

from conftest import Pair, run_cli
from vault import atomic, bundle, canonical
from vault.bundle import writer
from vault.errors import EXIT_USAGE, MediaFull, NotRegularFile


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink(path: Path) -> None:
    path.with_name("elsewhere.txt").write_bytes(b"the link's target\n")
    path.symlink_to(path.with_name("elsewhere.txt"))


def _dangling(path: Path) -> None:
    path.symlink_to(path.with_name("nothing-here"))


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def _folder(path: Path) -> None:
    path.mkdir()


KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (_fifo, "a named pipe (FIFO)"),
    "symlink": (_symlink, "a symbolic link"),
    "dangling symlink": (_dangling, "a symbolic link"),
    "device": (_device, "a character device"),
    "socket": (_socket, "a socket"),
    "folder": (_folder, "a folder"),
}


def _snapshot(path: Path) -> tuple[int, int, int, str | None]:
    st = os.lstat(path)
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return st.st_ino, st.st_mode, st.st_rdev, link


@pytest.fixture(params=sorted(KINDS))
def odd_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    make, words = KINDS[request.param]
    target = tmp_path / "target"
    make(target)
    return target, words


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if atomic.is_temporary(p.name)]


# -- the atomic layer ---------------------------------------------------------------------

def test_atomic_file_refuses_what_is_not_a_regular_file(odd_target: tuple[Path, str]) -> None:
    target, words = odd_target
    before = _snapshot(target)
    with pytest.raises(NotRegularFile) as info:
        with atomic.AtomicFile(target) as fh:
            fh.write(b"personal data")
    err = info.value
    assert err.exit_code == EXIT_USAGE and err.code == "not_regular_file"
    assert str(err).startswith(f"{target}: is {words}, not a regular file; refusing")
    assert "\n" not in str(err)
    assert _snapshot(target) == before
    _no_temporaries(target.parent)


def test_write_bytes_refuses_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(NotRegularFile, match="named pipe"):
        atomic.write_bytes(tmp_path / "p", b"x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p").st_mode)


def test_checked_again_just_before_the_rename(tmp_path: Path) -> None:
    """A FIFO put in place while the data was written is not replaced either."""
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")

    def swap(step: str) -> None:
        if step == "synced":
            target.unlink()
            os.mkfifo(target)

    with pytest.raises(NotRegularFile, match="named pipe"):
        with atomic.AtomicFile(target, fault=swap) as fh:
            fh.write(b"new\n")
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    _no_temporaries(tmp_path)


def test_regular_file_is_still_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic.write_bytes(tmp_path / "f", b"x")
        atomic.private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_an_explicit_mode_is_kept(tmp_path: Path) -> None:
    atomic.write_bytes(tmp_path / "metrics.prom", b"x 1\n", 0o644)
    assert stat.S_IMODE((tmp_path / "metrics.prom").stat().st_mode) == 0o644


def test_full_disk_names_the_file(tmp_path: Path) -> None:
    def full(step: str) -> None:
        if step == "written":
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(MediaFull) as info:
        with atomic.AtomicFile(tmp_path / "o.jsonl", fault=full) as fh:
            fh.write(b"x")
    assert str(info.value).startswith(f"{tmp_path / 'o.jsonl'}: no space left on device")
    _no_temporaries(tmp_path)


# -- the commands -------------------------------------------------------------------------

def _jsonl(pair: Pair) -> Path:
    conv = {"conversation_id": "c1", "started_at": "2024-03-14T09:05:12Z",
            "participants": [{"id": "p1", "role": "customer", "name": "Mara"}],
            "messages": [{"id": "m1", "at": "2024-03-14T09:05:12Z", "from": "p1",
                          "text": "my address is 1 Example Street"}]}
    path = pair.root / "in.jsonl"
    path.write_bytes(canonical.dumps(conv) + b"\n")
    return path


def _seal_args(pair: Pair, out: Path) -> list[str | Path]:
    return ["bundle", "seal", _jsonl(pair), "--to", pair.vault.public_key, "--source", "web",
            "--seq", "1", "-o", out, "--home", pair.exporter_path]


def _refused_by_cli(args: list[str | Path], target: Path, words: str) -> None:
    before = _snapshot(target)
    res = run_cli(*args)
    assert res.code == EXIT_USAGE, res.err
    assert res.err.strip() == (f"chatvault: {target}: is {words}, not a regular file; "
                               "refusing to replace it (name a new or regular file)")
    assert _snapshot(target) == before
    _no_temporaries(target.parent)


def test_bundle_seal_refuses_odd_targets(pair: Pair, odd_target: tuple[Path, str]) -> None:
    target, words = odd_target
    _refused_by_cli(_seal_args(pair, target), target, words)


def test_bundle_open_refuses_odd_targets(pair: Pair, odd_target: tuple[Path, str]) -> None:
    target, words = odd_target
    assert run_cli(*_seal_args(pair, pair.root / "b.cvb")).code == 0
    _refused_by_cli(["bundle", "open", pair.root / "b.cvb", "--home", pair.vault_path,
                     "-o", target], target, words)


def test_sources_convert_refuses_odd_targets(pair: Pair, odd_target: tuple[Path, str]) -> None:
    target, words = odd_target
    _refused_by_cli(["sources", "convert", _jsonl(pair), "-f", "jsonl", "-o", target],
                    target, words)


class _FullDisk(io.BytesIO):
    """A temporary file on a disk that fills after ``room`` bytes (no file name known)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


@pytest.mark.parametrize("room", [0, 20])
def test_bundle_seal_on_a_full_disk_names_the_bundle(pair: Pair, room: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The compressed stream fills the disk while it is flushed: still the bundle's name."""
    monkeypatch.setattr(writer, "open", lambda *a, **k: _FullDisk(room), raising=False)
    out = pair.root / "small" / "x.cvb"
    out.parent.mkdir()
    res = run_cli(*_seal_args(pair, out))
    assert res.code == 5, res.err
    assert res.err.strip() == f"chatvault: {out}: no space left on device"
    assert list(out.parent.iterdir()) == []


def test_an_unnamed_os_error_does_not_claim_a_file(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """The last-resort mapping says nothing rather than "file:" when no name is known."""
    def boom(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle, "inspect", boom)
    res = run_cli("bundle", "inspect", tmp_path / "x.cvb")
    assert res.code == 5
    assert res.err.strip() == "chatvault: no space left on device"


def test_a_missing_folder_is_named_rather_than_the_file_in_it(tmp_path: Path) -> None:
    """'--prometheus /nodir/x.prom' said 'x.prom: not found'; the folder is what is missing."""
    from vault.atomic import media_error

    gone = media_error(OSError(errno.ENOENT, "No such file"), tmp_path / "nodir" / "x.prom")
    assert gone.path == str(tmp_path / "nodir") and "folder not found" in gone.detail
    assert "'x.prom'" in gone.detail and gone.exit_code == 5
    there = media_error(OSError(errno.ENOENT, "No such file"), tmp_path / "x.prom")
    assert there.path == str(tmp_path / "x.prom") and "no such file or folder" in there.detail
