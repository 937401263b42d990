"""Homes on read-only storage (a forensic copy, a remounted disk): a clear error.

SQLite writes its write-ahead log beside a database even to read it, so a
read-only home cannot be inspected in place; the commands must say that,
naming the file, instead of "internal error" or a bare "unable to open".
Real read-only bind mounts: needs root (media marker).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import media_kit as mk
from conftest import run_cli
from export_kit import make_site

pytestmark = pytest.mark.media


def _read_only_view(folder: Path, at: Path) -> Iterator[Path]:
    at.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(at)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(at)], check=True)
        yield at
    finally:
        subprocess.run(["umount", str(at)], check=True)


@pytest.fixture
def site_views(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    mk.require(udev=False, exfat=False)
    site = make_site(tmp_path)
    assert run_cli("export", "run", *site.args()).code == 0
    [vault] = site.vaults
    assert run_cli("vault", "ingest", "--home", vault.path, site.stick).code == 0
    exp_view = _read_only_view(site.exporter.path, tmp_path / "ro-exporter")
    vault_view = _read_only_view(vault.path, tmp_path / "ro-vault")
    yield next(exp_view), next(vault_view)
    for view in (exp_view, vault_view):
        next(view, None)


def test_export_status_on_a_read_only_home_says_read_only(site_views: tuple[Path, Path]
                                                          ) -> None:
    exp, _ = site_views
    r = run_cli("export", "status", "--home", exp)
    assert r.code == 3, r.err  # UNKNOWN: no verdict
    assert "internal error" not in r.err
    assert "export.db" in r.err and "read-only" in r.err


@pytest.mark.parametrize("command", [["vault", "status"], ["subject", "find", "--email",
                                                           "ana@example.org"],
                                     ["audit", "verify"]])
def test_vault_commands_on_a_read_only_home_say_read_only(site_views: tuple[Path, Path],
                                                          command: list[str]) -> None:
    _, vault = site_views
    r = run_cli(*command, "--home", vault)
    assert r.code in (3, 5), r.err
    assert "store.db" in r.err and "read-only" in r.err
