"""Shared checks of the shipped systemd units.

``systemd-analyze verify`` insists that ExecStart names an existing
executable. The shipped units point at ``/usr/local/bin/chatvault`` (where
``pip install`` puts the entry point), which a test machine may not have, so
the tests verify a copy whose ExecStart is rewritten to a small wrapper that
runs this checkout's ``python -m vault``; nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

UNITS = REPO / "systemd"
SHIPPED_BINARY = "/usr/local/bin/chatvault"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def directives(name: str) -> dict[str, list[str]]:
    """Every ``Section.Key`` of a shipped unit with its values, in order."""
    found: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def copy_for_verify(tmp_path: Path, service: str, exec_start: str,
                    others: tuple[str, ...] = ()) -> Path:
    """The units in ``tmp_path``, the service's ExecStart pointing at this checkout.

    ``exec_start`` is the start of the shipped command line after the binary;
    the copy is refused if the shipped unit no longer runs it.
    """
    wrapper = tmp_path / "chatvault"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m vault \"$@\"\n")
    wrapper.chmod(0o755)
    text = (UNITS / service).read_text()
    assert f"ExecStart={SHIPPED_BINARY} {exec_start}" in text
    (tmp_path / service).write_text(text.replace(SHIPPED_BINARY, str(wrapper)))
    for name in others:
        shutil.copy(UNITS / name, tmp_path / name)
    return tmp_path


def assert_verifies(folder: Path, *names: str) -> None:
    """``systemd-analyze verify`` passes and says nothing about our units."""
    proc = subprocess.run(["systemd-analyze", "verify", *names], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if "chatvault" in line]
    assert proc.returncode == 0 and ours == [], proc.stderr


def exposure(folder: Path, service: str) -> tuple[float, str]:
    """The overall exposure ``systemd-analyze security`` gives, and its full report."""
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           service], cwd=folder, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1)), proc.stdout
