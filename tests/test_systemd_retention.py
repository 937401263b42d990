"""The retention units: valid for systemd, hardened, no network, daily and persistent.

As for the exporter's units, ``systemd-analyze verify`` runs on a copy whose
ExecStart points at a wrapper running this checkout (the shipped path,
``/usr/local/bin/chatvault``, may not exist on a test machine).
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
SERVICE = "chatvault-retention.service"
TIMER = "chatvault-retention.timer"

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
    assert "ExecStart=/usr/local/bin/chatvault retention apply" in text
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


def test_service_is_hardened_and_offline() -> None:
    d = _directives(SERVICE)
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateNetwork", "yes"), ("IPAddressDeny", "any"),
                       ("RestrictAddressFamilies", "AF_UNIX"), ("CapabilityBoundingSet", ""),
                       ("Type", "oneshot"), ("UMask", "0077"),
                       ("ReadWritePaths", "/var/lib/chatvault")]:
        assert d[f"Service.{key}"] == [value], key
    assert d["Service.ExecStart"] == ["/usr/local/bin/chatvault retention apply"]


def test_timer_is_daily_and_catches_up() -> None:
    d = _directives(TIMER)
    assert d["Timer.OnCalendar"] == ["daily"]
    assert d["Timer.Persistent"] == ["true"]
    assert d["Install.WantedBy"] == ["timers.target"]
