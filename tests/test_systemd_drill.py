"""The drill's systemd units: valid for systemd, hardened, monthly, sampled, persistent.

As for the exporter's units, ``systemd-analyze verify`` needs ExecStart to
name an existing executable: the test verifies a copy whose ExecStart
points at a wrapper running this checkout's ``python -m vault``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import unit_kit as uk

SERVICE = "chatvault-drill.service"
TIMER = "chatvault-drill.timer"


def _copy_for_verify(tmp_path: Path) -> Path:
    return uk.copy_for_verify(tmp_path, SERVICE, "drill ", others=(TIMER,))


@uk.needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    uk.assert_verifies(_copy_for_verify(tmp_path), SERVICE, TIMER)


@uk.needs_analyze
def test_exposure_is_low(tmp_path: Path) -> None:
    level, report = uk.exposure(_copy_for_verify(tmp_path), SERVICE)
    assert level <= 1.0, report


def test_service_runs_a_sampled_drill_hardened() -> None:
    d = uk.directives(SERVICE)
    args = d["Service.ExecStart"][0].split()
    assert args[1:3] == ["drill", "--sample"] and int(args[3]) >= 1
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("PrivateNetwork", "yes"),
                       ("IPAddressDeny", "any"), ("RestrictAddressFamilies", "AF_UNIX"),
                       ("CapabilityBoundingSet", ""), ("Type", "oneshot"), ("UMask", "0077")]:
        assert d[f"Service.{key}"] == [value], key
    assert d["Service.ReadWritePaths"] == ["/var/lib/chatvault"]
    assert d["Service.Environment"] == ["CHATVAULT_HOME=/var/lib/chatvault"]


def test_the_command_the_unit_runs_exists(cli: Any) -> None:
    args = uk.directives(SERVICE)["Service.ExecStart"][0].split()[1:]
    res = cli(*args, "--help")
    assert res.code == 0 and "--sample" in res.out


def test_timer_is_monthly_and_catches_up() -> None:
    d = uk.directives(TIMER)
    assert d["Timer.OnCalendar"] == ["monthly"]
    assert d["Timer.Persistent"] == ["true"]
    assert d["Install.WantedBy"] == ["timers.target"]


def test_drill_and_retention_run_as_the_daemon_user() -> None:
    """The daemon (root, to mount) owns the home's 0600 files: the timers' units must too."""
    daemon = uk.directives("chatvault-vault.service").get("Service.User", ["root"])
    for unit in (SERVICE, "chatvault-retention.service"):
        d = uk.directives(unit)
        assert d.get("Service.User", ["root"]) == daemon, unit
        assert d.get("Service.CapabilityBoundingSet") == [""], unit
