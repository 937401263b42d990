"""A store busy with an ingest: DPO commands wait, say so, and fail in plain words.

Another connection holds the write lock (as ingest does for each bundle);
a short ``CHATVAULT_BUSY_TIMEOUT`` keeps the tests quick.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_proc
from gdpr_kit import MARA_EMAIL, Vault, sample_vault
from vault import quickcli, store


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return sample_vault(tmp_path)


@pytest.fixture
def locked(vault: Vault) -> Iterator[sqlite3.Connection]:
    """A second connection holding the write lock, as an ingest does."""
    other = sqlite3.connect(str(vault.home / store.FILE_NAME), isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def _busy_message(vault: Vault, err: str) -> None:
    assert "internal error" not in err
    assert (f"chatvault: the vault store at {vault.home / store.FILE_NAME} is busy (an ingest "
            "is running); try again when 'vault status' shows it finished") in err
    assert "waiting up to 1 s" in err  # told while it waited


def test_typer_path_waits_then_says_busy(vault: Vault, locked: sqlite3.Connection,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATVAULT_BUSY_TIMEOUT", "1")
    r = vault.cli("search", "refund")
    assert r.code == 1
    _busy_message(vault, r.err)


def test_quick_lane_waits_then_says_busy(vault: Vault, locked: sqlite3.Connection) -> None:
    r = run_proc("subject", "find", "--email", MARA_EMAIL, "--home", vault.home, "--json",
                 env={"CHATVAULT_BUSY_TIMEOUT": "1"})
    assert r.code == 1
    _busy_message(vault, r.err)
    assert '"error":"store_busy"' in r.out.replace(" ", "")


def test_a_wait_that_ends_in_time_goes_on(vault: Vault, locked: sqlite3.Connection,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATVAULT_BUSY_TIMEOUT", "20")
    monkeypatch.setattr(store, "NOTICE_AFTER", 0.2)
    threading.Timer(1.0, locked.execute, ("COMMIT",)).start()
    r = vault.cli("subject", "find", "--email", MARA_EMAIL)
    assert r.code == 0, r.err
    assert "is busy (an ingest is running); waiting up to 20 s" in r.err


def test_any_locked_error_reaching_the_top_is_store_busy(
        vault: Vault, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def locked_write() -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr("sys.argv", ["chatvault", "vault", "x", "--home", str(vault.home)])
    with pytest.raises(SystemExit) as exc:
        quickcli.guarded(locked_write, logs=False)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert f"store at {vault.home / store.FILE_NAME} is busy (an ingest is running)" in err
