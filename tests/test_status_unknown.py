"""Status commands exit 3 (UNKNOWN) when they cannot judge, never 2 (CRITICAL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Pair, run_cli, run_proc


@pytest.mark.parametrize("family", ["vault", "export"])
def test_a_missing_home_is_unknown_not_critical(tmp_path: Path, family: str) -> None:
    r = run_cli(family, "status", "--home", tmp_path / "nowhere")
    assert r.code == 3, r.err
    assert "chatvault:" in r.err
    # the same error, in the same words, from both families (one said 'config', one 'usage')
    got = run_cli(family, "status", "--home", tmp_path / "nowhere", "--json").json()
    assert got["error"] == "not_a_home" and got["path"] == str(tmp_path / "nowhere")
    assert got["message"].startswith("is not a chatvault home (no keys/public.key)")


@pytest.mark.parametrize("family", ["vault", "export"])
def test_an_unknown_option_is_unknown_not_critical(pair: Pair, family: str) -> None:
    home = pair.vault_path if family == "vault" else pair.exporter_path
    r = run_cli(family, "status", "--home", home, "--no-such-option")
    assert r.code == 3
    assert "No such option" in r.err


def test_an_unreadable_config_is_unknown(pair: Pair) -> None:
    (pair.vault_path / "config.toml").write_text("[erasure\nfour_eyes = maybe\n")
    r = run_proc("vault", "status", "--home", pair.vault_path, "--json")
    assert r.code == 3, r.err
    assert '"exit_code":3' in r.out.replace(" ", "")


def test_usage_errors_of_other_commands_still_exit_2(pair: Pair) -> None:
    assert run_cli("vault", "ingest", "--no-such-option").code == 2
    assert run_cli("audit", "verify", "--home", pair.vault_path / "nowhere").code == 2


def test_a_judgment_still_exits_0_1_2(pair: Pair) -> None:
    r = run_cli("vault", "status", "--home", pair.vault_path)
    assert r.code in (0, 1, 2), r.err


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("broken", [False, True])
def test_a_reader_that_went_away_leaves_the_level(pair: Pair, as_json: bool,
                                                  broken: bool) -> None:
    """'vault status | head -1': the broken pipe made it exit 1, a WARNING, whatever it judged."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    cfg = pair.vault.config
    if broken:  # UNKNOWN: a store file that is no SQLite database at all
        (pair.vault_path / "store.db").write_bytes(b"x" * 8192)
    else:  # CRITICAL: no disk has that much room
        cfg.write_text(cfg.read_text().replace("disk_free_warning_percent = 10",
                                               "disk_free_warning_percent = 100")
                       .replace("disk_free_critical_percent = 3",
                                "disk_free_critical_percent = 100"))
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "vault", "vault", "status", "--home",
                               str(pair.vault_path), *(["--json"] if as_json else [])],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(write)
    judged = run_proc("vault", "status", "--home", pair.vault_path)
    assert judged.code == (3 if broken else 2)
    assert done.returncode == judged.code, done.stderr
    assert "Traceback" not in done.stderr and cfg.exists()
