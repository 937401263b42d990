"""The entry point's quick lane: ``subject find`` without Typer, answering exactly as with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Pair, run_cli, run_proc
from vault import quickcli
from vault.cli import common
from vault_kit import conv, ingested


@pytest.fixture
def filled(pair: Pair, tmp_path: Path) -> Pair:
    return ingested(pair, tmp_path, [
        conv("w1", ["hello"], email="mara.quint@example.org", phone="07700 900123",
             at="2024-01-10T10:00:00Z"),
        conv("w2", ["call me on 07700 900123"], email="ana@example.org", phone=None,
             at="2024-03-10T10:00:00Z"),
        conv("w3", ["nothing"], email="ana@example.org", phone=None,
             at="2024-05-10T10:00:00Z")])


CASES = [
    ["--email", "Mara.Quint@EXAMPLE.org", "--json"],
    ["--phone", "07700-900-123"],
    ["--email=ana@example.org", "--since", "2024-02-01", "--until=2024-04-30", "--json"],
    ["--email", "ana@example.org", "--name", "Mara Quint", "--source", "web"],
    ["--email", "ana@example.org", "--purpose", "case 7", "--json"],
    ["--json"],  # no identifier: a usage error, reported alike
    ["--email", "not-an-address"],
    ["--email", "x@example.org", "--since", "yesterday", "--json"],
]


@pytest.mark.parametrize("args", CASES)
def test_quick_lane_answers_as_typer_does(filled: Pair, args: list[str]) -> None:
    home = ["--home", str(filled.vault_path)]
    quick = run_proc("subject", "find", *args, *home)  # python -m vault: the entry point
    full = run_cli("subject", "find", *args, *home)  # vault.cli.main: Typer
    assert (quick.code, quick.out, quick.err) == (full.code, full.out, full.err)
    assert quick.code in (0, 2)


def test_quick_lane_really_skips_typer(filled: Pair) -> None:
    script = ("import sys\nimport vault.quickcli as q\n"
              f"sys.argv = ['chatvault', 'subject', 'find', '--email', 'ana@example.org', "
              f"'--home', {str(filled.vault_path)!r}, '--json']\n"
              "q.main()\nsys.stderr.write('typer loaded' if 'typer' in sys.modules "
              "else 'no typer')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert '"exact":2' in proc.stdout
    assert proc.stderr.endswith("no typer")


@pytest.mark.parametrize("args", [
    ["--help"], ["--emial", "x@example.org"], ["--home", "a", "--home", "b"], ["--email"],
    ["--email", "--json"], ["extra"], ["--json=yes"], ["--", "--email", "x@example.org"]])
def test_anything_unusual_goes_to_typer(args: list[str]) -> None:
    assert quickcli.parse_find(args) is None


def test_plain_options_are_read_as_typer_reads_them() -> None:
    got = quickcli.parse_find(["--email", "a@example.org", "--email=b@example.org",
                               "--phone", "+44 7700 900123", "--id", "slack:U1",
                               "--customer-id", "c-9", "--home=/srv/v", "--json",
                               "--since", "2024-01-01"])
    assert got == {"email": ["a@example.org", "b@example.org"], "phone": ["+44 7700 900123"],
                   "name": [], "ids": ["slack:U1"], "customer_id": ["c-9"],
                   "since": "2024-01-01", "until": None, "source": None, "purpose": None,
                   "home": Path("/srv/v"), "as_json": True}


def test_home_resolves_as_everywhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    assert quickcli.resolve_home(None) == common.resolve_home(None)
    monkeypatch.setenv("CHATVAULT_HOME", "/srv/chatvault")
    assert quickcli.resolve_home(None) == common.resolve_home(None) == Path("/srv/chatvault")
    assert quickcli.resolve_home(Path("/x")) == common.resolve_home(Path("/x"))


def test_other_commands_still_reach_typer() -> None:
    proc = run_proc("subject", "find", "--help")
    assert proc.code == 0 and "--customer-id" in proc.out
    assert run_proc("keys", "--help").code == 0
