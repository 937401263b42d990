"""The exporter's systemd units: valid for systemd, hardened, daily and persistent.

``systemd-analyze verify`` insists that ExecStart names an existing
executable. The shipped unit points at ``/usr/local/bin/chatvault`` (where
``pip install`` puts the entry point), which a test machine may not have, so
the test verifies a copy whose ExecStart is rewritten to a small wrapper
that runs this checkout's ``python -m vault``; nothing else is changed.
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
SERVICE = "chatvault-export.service"
TIMER = "chatvault-export.timer"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def _directives(name: str) -> dict[str, list[str]]:
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


def _copy_for_verify(tmp_path: Path) -> Path:
    wrapper = tmp_path / "chatvault"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m vault \"$@\"\n")
    wrapper.chmod(0o755)
    text = (UNITS / SERVICE).read_text()
    assert "ExecStart=/usr/local/bin/chatvault export run" in text
    (tmp_path / SERVICE).write_text(text.replace("/usr/local/bin/chatvault", str(wrapper)))
    shutil.copy(UNITS / TIMER, tmp_path / TIMER)
    return tmp_path


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    folder = _copy_for_verify(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", SERVICE, TIMER], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if "chatvault" in line]
    assert proc.returncode == 0 and ours == [], proc.stderr


@needs_analyze
def test_exposure_is_low(tmp_path: Path) -> None:
    folder = _copy_for_verify(tmp_path)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           SERVICE], cwd=folder, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.0, proc.stdout


def test_service_is_hardened() -> None:
    d = _directives(SERVICE)
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("PrivateNetwork", "yes"),
                       ("StateDirectory", "chatvault"), ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_UNIX"), ("Type", "oneshot"),
                       ("UMask", "0077")]:
        assert d[f"Service.{key}"] == [value], key
    writable = d["Service.ReadWritePaths"][0].split()
    # the state directory, and the mount point, which may be absent ("-")
    assert writable == ["/var/lib/chatvault", "-/media/chatvault"]
    assert d["Service.Environment"] == ["CHATVAULT_HOME=/var/lib/chatvault"]


def test_timer_is_daily_and_catches_up() -> None:
    d = _directives(TIMER)
    assert d["Timer.OnCalendar"] == ["daily"]
    assert d["Timer.Persistent"] == ["true"]
    assert d["Install.WantedBy"] == ["timers.target"]
