"""Small files given by a person or found on a stick: never a FIFO waited on, never a device.

A FIFO named where a key file, a paper backup, a passphrase file or a
request is expected used to hang the command forever (its open waits for a
writer). Each must now be one line naming the file, "is not a regular
file", with the exit code the same command gives a garbage file of that
kind, and nothing read from it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from conftest import Pair, Result, run_cli
from gdpr_kit import MARA_EMAIL, Vault, sample_vault
from vault import atomic
from vault.errors import BadDocument, InputRejected

#: long enough for any command here, short enough that a hang fails rather than stalls
WAIT = 20


def no_wait(fifo: Path, *args: str | Path) -> Result:
    """Run a command that is given ``fifo``; fail (not hang) if it waits on it."""
    done: list[Result] = []
    worker = threading.Thread(target=lambda: done.append(run_cli(*args)), daemon=True)
    worker.start()
    worker.join(WAIT)
    if not done:  # unblock the reader so that the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(WAIT)
        pytest.fail(f"{' '.join(map(str, args[:2]))} waited on a FIFO")
    return done[0]


def refused(r: Result, fifo: Path, code: int) -> None:
    assert r.code == code, r.err
    [line] = [ln for ln in r.err.splitlines() if ln.startswith("chatvault:")]
    assert str(fifo) in line and "is not a regular file" in line, r.err


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "given.pub"
    os.mkfifo(path)
    return path


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return sample_vault(tmp_path)


def test_keys_trust_and_show_refuse_a_fifo(pair: Pair, fifo: Path) -> None:
    refused(no_wait(fifo, "keys", "trust", fifo, "--role", "exporter", "--home",
                    pair.vault_path), fifo, 3)
    refused(no_wait(fifo, "keys", "show", fifo), fifo, 3)
    assert len(pair.vault.trust().entries) == 1  # type: ignore[attr-defined]


def test_import_paper_refuses_a_fifo(tmp_path: Path, fifo: Path) -> None:
    refused(no_wait(fifo, "keys", "import-paper", fifo, "--home", tmp_path / "restored"),
            fifo, 3)
    assert not (tmp_path / "restored").exists()


def test_request_approve_refuses_a_fifo_on_the_stick(pair: Pair, tmp_path: Path) -> None:
    folder = tmp_path / "stick" / "chatvault" / "requests"
    folder.mkdir(parents=True)
    fifo = folder / "erase-0123456789abcdef.request.json"
    os.mkfifo(fifo)
    refused(no_wait(fifo, "request", "approve", fifo, "--yes", "--home", pair.exporter_path),
            fifo, 3)


def test_request_approve_never_follows_a_link_on_the_stick(pair: Pair, tmp_path: Path) -> None:
    folder = tmp_path / "stick" / "chatvault" / "requests"
    folder.mkdir(parents=True)
    link = folder / "erase-0123456789abcdef.request.json"
    link.symlink_to(pair.exporter.public_key)  # type: ignore[attr-defined]
    r = run_cli("request", "approve", link, "--yes", "--home", pair.exporter_path)
    assert r.code == 3 and "is not a regular file but a symbolic link" in r.err, r.err


def test_restore_create_refuses_a_fifo_as_recipient(vault: Vault, fifo: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    refused(no_wait(fifo, "restore", "create", "--to", fifo, "--source", "sample", "--out", out,
                    "--home", vault.home), fifo, 3)
    assert not out.exists() or not list(out.iterdir())


def test_dsar_export_refuses_a_fifo_to_seal_to(vault: Vault, fifo: Path,
                                              tmp_path: Path) -> None:
    opened = vault.cli("dsar", "open", "--received", "2024-09-02", "--email", MARA_EMAIL,
                       "--json")
    assert opened.code == 0, opened.err
    case = str(opened.json()["case_id"])  # type: ignore[index]
    out = tmp_path / "out"
    refused(no_wait(fifo, "dsar", "export", case, "--out", out, "--seal-to", fifo, "--home",
                    vault.home), fifo, 3)
    assert not out.exists()


def test_request_answer_to_refuses_a_fifo(pair: Pair, fifo: Path, tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    refused(no_wait(fifo, "request", "restore", "--source", "web", "--media", stick,
                    "--answer-to", fifo, "--home", pair.exporter_path), fifo, 3)
    assert not (stick / "chatvault" / "requests").exists() or not list(
        (stick / "chatvault" / "requests").iterdir())


def test_a_passphrase_may_come_through_a_pipe_not_from_a_device(tmp_path: Path) -> None:
    """'--passphrase-file <(pass show vault)' is a pipe with a writer: read to its end.

    A device is refused as a passphrase file that cannot be read is (exit 2).
    """
    fifo = tmp_path / "pass"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(b"correct horse\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    made = no_wait(fifo, "init", "exporter", tmp_path / "e", "--name", "e",
                   "--passphrase-file", fifo)
    writer.join(WAIT)
    assert made.code == 0, made.err
    assert b"correct horse" not in (tmp_path / "e" / "keys" / "secret.key").read_bytes()

    device = Path("/dev/null")
    r = run_cli("init", "exporter", tmp_path / "e2", "--name", "e2",
                "--passphrase-file", device)
    refused(r, device, 2)
    assert not (tmp_path / "e2").exists()


def test_a_huge_key_file_is_refused_unread(pair: Pair, tmp_path: Path) -> None:
    big = tmp_path / "big.pub"
    with open(big, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: nothing to read, only to refuse
    r = run_cli("keys", "trust", big, "--role", "exporter", "--home", pair.vault_path)
    assert r.code == 3 and str(big) in r.err and "larger than 65536 bytes" in r.err, r.err


def test_read_small(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"12345")
    assert atomic.read_small(plain, 5) == b"12345"
    with pytest.raises(InputRejected, match="larger than 4 bytes"):
        atomic.read_small(plain, 4)
    link = tmp_path / "link"
    link.symlink_to(plain)
    assert atomic.read_small(link, 5) == b"12345"
    with pytest.raises(BadDocument, match="is not a regular file but a symbolic link"):
        atomic.read_small(link, 5, follow=False, refuse=BadDocument)
    with pytest.raises(InputRejected, match="is not a regular file but a folder"):
        atomic.read_small(tmp_path, 5)
    with pytest.raises(InputRejected, match="a character device"):
        atomic.read_small("/dev/zero", 5)
    with pytest.raises(FileNotFoundError):
        atomic.read_small(tmp_path / "missing", 5)
