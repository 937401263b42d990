"""The command line: help everywhere, exit codes, JSON errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import Pair, run_cli
from vault.cli import app


def _commands(group, prefix=()):  # type: ignore[no-untyped-def]
    import typer.main

    cmd = typer.main.get_command(group)
    stack = [(prefix, cmd)]
    while stack:
        path, c = stack.pop()
        subs = getattr(c, "commands", None)
        if subs:
            for name, sub in subs.items():
                stack.append((path + (name,), sub))
        else:
            yield path, c


def test_every_command_has_help_text() -> None:
    missing = [" ".join(p) for p, c in _commands(app) if not (c.help or "").strip()]
    assert missing == []


def test_every_command_answers_help() -> None:
    for path, _ in _commands(app):
        r = run_cli(*path, "--help")
        assert r.code == 0, (path, r.err)


def test_usage_error_exits_2() -> None:
    assert run_cli("bundle", "seal").code == 2
    assert run_cli("no-such-command").code == 2


def test_missing_file_exits_5_naming_it(tmp_path: Path) -> None:
    r = run_cli("bundle", "inspect", tmp_path / "nope.cvb")
    assert r.code == 5
    assert "nope.cvb" in r.err and "not found" in r.err


def test_rejected_bundle_json_error(pair: Pair, sample_jsonl: Path) -> None:
    out = pair.root / "s.cvb"
    r = run_cli("bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to",
                pair.vault.public_key, "--source", "web", "--seq", "1", "-o", out)
    assert r.code == 0, r.err
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF
    out.write_bytes(bytes(data))
    r = run_cli("bundle", "verify", out, "--home", pair.vault_path, "--json")
    assert r.code == 3
    err = r.json()
    assert err["error"] == "bad_signature" and err["path"] == str(out)
    assert str(out) in r.err


def test_inspect_reads_as_words(pair: Pair, sample_jsonl: Path) -> None:
    out = pair.root / "i.cvb"
    assert run_cli("bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to",
                   pair.vault.public_key, "--source", "web", "--seq", "1", "-o", out).code == 0
    r = run_cli("bundle", "inspect", out)
    assert r.code == 0, r.err
    assert "prev_hash     none (the first of its chain)" in r.out
    assert f"recipients    {pair.vault.public().fingerprint}\n" in r.out
    assert re.search(r"counts        .*\d+ conversations, \d+ messages", r.out)
    assert not re.search(r"[{}\[\]]|None", r.out), r.out  # no Python values


def test_untrusted_signer_exits_4(pair: Pair, sample_jsonl: Path, tmp_path: Path) -> None:
    from vault import home

    stranger = home.create("exporter", tmp_path / "stranger", "stranger")
    out = pair.root / "x.cvb"
    r = run_cli("bundle", "seal", sample_jsonl, "--home", stranger.path, "--to",
                pair.vault.public_key, "--source", "web", "--seq", "1", "-o", out)
    assert r.code == 0, r.err
    r = run_cli("bundle", "open", out, "--home", pair.vault_path, "-o", tmp_path / "o.jsonl",
                "--json")
    assert r.code == 4 and r.json()["error"] == "untrusted_signer"
    assert not (tmp_path / "o.jsonl").exists()


def test_an_exporter_verifies_its_own_bundle(pair: Pair, sample_jsonl: Path,
                                            tmp_path: Path) -> None:
    """Its own key needs no trust entry; another exporter's key still does."""
    from vault import home

    own, other = pair.root / "own.cvb", pair.root / "other.cvb"
    stranger = home.create("exporter", tmp_path / "stranger", "stranger")
    for h, out in ((pair.exporter_path, own), (stranger.path, other)):
        assert run_cli("bundle", "seal", sample_jsonl, "--home", h, "--to",
                       pair.vault.public_key, "--source", "web", "--seq", "1",
                       "-o", out).code == 0
    r = run_cli("bundle", "verify", own, "--home", pair.exporter_path, "--json")
    assert r.code == 0, r.err
    assert r.json()["signer"] == pair.exporter.public().fingerprint
    r = run_cli("bundle", "verify", other, "--home", pair.exporter_path, "--json")
    assert r.code == 4 and r.json()["error"] == "untrusted_signer"
    r = run_cli("bundle", "verify", own, "--home", pair.exporter_path, "--role", "vault")
    assert r.code == 4, "only for the role the key states"


@pytest.mark.parametrize("args", [("bundle", "inspect"), ("sources", "formats")])
def test_no_home_needed(args: tuple[str, ...], tmp_path: Path, sample_jsonl: Path,
                        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATVAULT_HOME", str(tmp_path / "does-not-exist"))
    extra: list[object] = []
    if args[0] == "bundle":
        out = pair.root / "s.cvb"
        run_cli("bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to",
                pair.vault.public_key, "--source", "web", "--seq", "1", "-o", out)
        extra = [out]
    r = run_cli(*args, *extra)
    assert r.code == 0, r.err


def test_console_script_targets_exist() -> None:
    """The installed 'chatvault' command points at a module that is committed."""
    import importlib
    import tomllib

    from conftest import REPO

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_config_errors_name_the_right_line(pair: Pair) -> None:
    from vault import vaultconfig
    from vault.errors import ConfigError

    cfg = pair.vault.config
    cfg.write_text(cfg.read_text() + '\n[sources."what.sapp"]\nretention_days = -5\n')
    line = len(cfg.read_text().splitlines())
    with pytest.raises(ConfigError) as info:
        vaultconfig.load(pair.vault_path)
    assert f"config.toml:{line}" in str(info.value)


def test_exporter_config_on_a_vault_command_says_so(pair: Pair) -> None:
    from vault import vaultconfig
    from vault.errors import ConfigError

    pair.vault.config.write_text(pair.exporter.config.read_text() +
                                 '[[recipients]]\npublic_key = "x.pub"\n')
    with pytest.raises(ConfigError, match="exporter home"):
        vaultconfig.load(pair.vault_path)


@pytest.mark.parametrize("command", [["vault", "status"], ["vault", "ingest", "."],
                                     ["subject", "find", "--email", "ana@example.org"],
                                     ["export", "status"], ["vault", "digest"], ["drill"]])
def test_a_wrong_home_is_named_the_same_way_by_every_command(tmp_path: Path,
                                                             command: list[str]) -> None:
    """Not 'config file not found' from some commands and 'not a home' from others."""
    r = run_cli(*command, "--home", tmp_path / "nowhere")
    assert r.code in (2, 3), r.err  # status commands: 3, UNKNOWN
    assert "is not a chatvault home" in r.err and "nowhere" in r.err
    assert not (tmp_path / "nowhere").exists(), "a store was made where none was"


def test_vault_digest_never_makes_a_store_in_an_exporter_home(pair: Pair) -> None:
    r = run_cli("vault", "digest", "--home", pair.exporter_path)
    assert r.code == 2 and "exporter home" in r.err, r.err
    assert not (pair.exporter_path / "store.db").exists()


@pytest.mark.parametrize("command", [["drill"], ["restore", "create", "--source", "web",
                                                 "--out", "unused"]])
def test_store_commands_on_an_exporter_home_say_so(pair: Pair, command: list[str]) -> None:
    """They said 'the store is missing: restore it from a backup', alarming and wrong."""
    r = run_cli(*command, "--to", pair.exporter.public_key, "--home", pair.exporter_path) \
        if command[0] == "restore" else run_cli(*command, "--home", pair.exporter_path)
    assert r.code == 2, r.err
    assert "is an exporter home, not a vault: is --home right?" in r.err
    assert "backup" not in r.err and not (pair.exporter_path / "store.db").exists()


def test_a_file_given_as_media_is_not_a_folder(tmp_path: Path) -> None:
    from export_kit import make_site

    site = make_site(tmp_path)
    image = tmp_path / "stick.img"
    image.write_bytes(b"not a folder")
    r = run_cli("export", "rewrite", "--home", site.exporter.path, "--media", image)
    assert r.code == 5, r.err
    assert "is not a folder" in r.err and "not found" not in r.err


def test_version_is_printed() -> None:
    """The version a bundle header names as its software, asked of the command."""
    from vault import __version__

    res = run_cli("--version")
    assert res.code == 0 and res.out == f"chatvault {__version__}\n"
