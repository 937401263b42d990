"""What an operator gets wrong at 2 a.m., and what chatvault must say instead of guessing.

Each case once ended in a silent wrong answer (a false "nothing held", "0
ingested"), a hang or an internal error; each must now be one clear line
naming the file or value, with the documented exit code, and nothing changed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from gdpr_kit import MARA_EMAIL, Vault, sample_vault
from vault import media, store


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return sample_vault(tmp_path)


def test_a_fifo_named_like_a_bundle_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "web-00000001.cvb"
    os.mkfifo(fifo)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(
        run_cli("bundle", "inspect", fifo).code), daemon=True)
    worker.start()
    worker.join(20)
    if not done:  # unblock the reader so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("bundle inspect waited on a FIFO")
    assert done == [3]


@pytest.mark.parametrize("where", ["outbox", "elsewhere"])
def test_ingest_of_a_folder_that_is_not_a_stick_says_so(vault: Vault, tmp_path: Path,
                                                        where: str) -> None:
    folder = (vault.stick / media.ROOT / media.OUTBOX if where == "outbox"
              else tmp_path / "somewhere")
    folder.mkdir(exist_ok=True)
    got = vault.cli("vault", "ingest", folder)
    assert got.code == 2, got.err
    assert "is not a media folder" in got.err and str(folder) in got.err
    if where == "outbox":
        assert f"give the stick's top folder instead: {vault.stick}" in got.err


@pytest.mark.parametrize("args", [
    ["subject", "find", "--email", MARA_EMAIL, "--source", "smaple"],
    ["search", "order", "--source", "smaple"],
    ["hold", "add", "h1", "--reason", "r", "--source", "smaple"],
], ids=["subject-find", "search", "hold"])
def test_an_unknown_source_is_refused_never_answered_with_nothing(vault: Vault,
                                                                  args: list[str]) -> None:
    """A typo in --source must not read as 'we hold nothing about this person'."""
    got = vault.cli(*args, "--json")
    assert got.code == 2, got.err
    assert "no source named 'smaple'" in got.err and "known: sample" in got.err


def test_restore_of_an_unknown_source_is_refused(vault: Vault, tmp_path: Path) -> None:
    out = tmp_path / "restore"
    got = vault.cli("restore", "create", "--to", vault.pair.exporter.public_key,
                    "--source", "smaple", "--out", out)
    assert got.code == 2 and "no source named 'smaple'" in got.err, got.err
    assert not out.exists() or not list(out.iterdir())


def test_a_window_that_ends_before_it_starts_is_refused(vault: Vault, tmp_path: Path) -> None:
    """--since after --until is a typo: exit 2, never '0 exact' or an empty restore set."""
    window = ["--since", "2024-03-05", "--until", "2024-03-01"]
    got = vault.cli("subject", "find", "--email", MARA_EMAIL, *window, "--json")
    assert got.code == 2 and "is after --until" in got.err, got.err
    assert got.json()["error"] == "usage"  # type: ignore[index]
    out = tmp_path / "restore"
    got = vault.cli("restore", "create", "--to", vault.pair.exporter.public_key,
                    "--source", "sample", *window, "--out", out)
    assert got.code == 2 and "is after --until" in got.err, got.err
    assert not out.exists() or not list(out.iterdir())
    one_day = vault.cli("subject", "find", "--email", MARA_EMAIL, "--since", "2024-03-01",
                        "--until", "2024-03-01", "--json")
    assert one_day.code == 0, one_day.err


def test_erase_with_no_answer_is_a_usage_error(vault: Vault) -> None:
    """End of input (a script, < /dev/null) is not a 'no': exit 2, and nothing erased."""
    got = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "Art. 17", input_text="")
    assert got.code == 2 and "pass --yes" in got.err, got.err
    assert vault.cli("subject", "find", "--email", MARA_EMAIL, "--json").json()[
        "exact"] > 0  # type: ignore[index]


def test_erase_under_a_hold_is_refused_without_asking(vault: Vault) -> None:
    assert vault.cli("hold", "add", "lit-1", "--reason", "claim",
                     "--source", "sample").code == 0
    got = vault.cli("erase", "--email", MARA_EMAIL, "--reason", "Art. 17", input_text="")
    assert got.code == 4, got.err
    assert "lit-1" in got.err and "[y/N]" not in got.err


def test_a_config_with_a_byte_order_mark_is_read(vault: Vault) -> None:
    cfg = vault.home / "config.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())
    got = vault.cli("vault", "status", "--json")
    assert got.code in (0, 1), got.err


def test_a_damaged_store_is_named_with_what_to_do(vault: Vault) -> None:
    db = vault.home / store.FILE_NAME
    conn = vault.conn()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    for page in range(2, pages):  # every page but the schema's: whatever a query reads
        start = page * size + 16
        data[start:start + 64] = os.urandom(64)
    db.write_bytes(bytes(data))

    for args in (["search", "order"], ["vault", "digest"]):
        got = vault.cli(*args, "--json")
        assert got.code == 5, (args, got.code, got.err)
        assert got.json()["error"] == "store_damaged", got.out  # type: ignore[index]
        assert "vault rebuild" in got.err and "internal error" not in got.err


def test_preview_with_the_wrong_format_shows_a_bounded_list(tmp_path: Path) -> None:
    text = tmp_path / "chat.log"
    text.write_text("".join(f"10:{i:02d} <ana> hello {i}\n" for i in range(60)))
    got = run_cli("sources", "preview", text, "-f", "jsonl")
    assert got.code == 3
    assert got.err.count("problem: ") == 21  # twenty, then one line saying there are more
    assert "is --format right for this file?" in got.err


def test_stored_text_that_is_not_utf8_is_damage_and_its_text_is_not_shown(
        vault: Vault) -> None:
    """Bytes changed inside a record: store_damaged, and the error never quotes the text."""
    db = vault.home / store.FILE_NAME
    conn = vault.conn()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    hits = 0
    start = data.find(b"arrived damaged")
    while start != -1:  # every copy: the record, the message, the index's text
        data[start:start + 2] = b"\xff\xfe"
        hits += 1
        start = data.find(b"arrived damaged", start + 1)
    assert hits
    db.write_bytes(bytes(data))

    for args in (["vault", "digest"], ["search", "order"],
                 ["restore", "create", "--to", vault.pair.exporter.public_key, "--source",
                  "sample", "--out", vault.home.parent / "r"]):
        got = vault.cli(*args, "--json")
        assert got.code == 5, (args, got.code, got.err)
        assert got.json()["error"] == "store_damaged", (args, got.out)  # type: ignore
        assert "internal error" not in got.err and "\ufffd" not in got.err + got.out
        assert "Hi, my order" not in got.err + got.out


@pytest.mark.parametrize("table", ["audit_log", "tombstones"])
def test_a_table_gone_from_the_store_is_damage_not_an_internal_error(vault: Vault,
                                                                     table: str) -> None:
    """A table dropped outside chatvault: store_damaged (5), never 'internal error' (1)."""
    conn = vault.conn()
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.close()
    for args in (["audit", "verify"], ["subject", "find", "--email", MARA_EMAIL]):
        got = vault.cli(*args, "--json")
        assert got.code == 5, (args, got.code, got.err)
        assert got.json()["error"] == "store_damaged", (args, got.out)  # type: ignore
        assert f"no such table: {table}" in got.err and "internal error" not in got.err


def test_an_internal_error_with_json_still_answers_in_json(vault: Vault,
                                                           monkeypatch: Any) -> None:
    """A script reading --json gets an object saying so, never an empty stdout."""
    from vault import subjects

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(subjects, "find_for", broken)
    got = vault.cli("subject", "find", "--email", MARA_EMAIL, "--json")
    assert got.code == 1 and "internal error: RuntimeError: a bug" in got.err
    assert got.json() == {"error": "internal", "exit_code": 1,  # type: ignore[comparison-overlap]
                          "message": "internal error: RuntimeError: a bug"}
    plain = vault.cli("subject", "find", "--email", MARA_EMAIL)
    assert plain.code == 1 and plain.out == ""
