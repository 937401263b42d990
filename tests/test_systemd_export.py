"""The exporter's systemd units: valid for systemd, hardened, daily and persistent.

The verification runs on a copy pointing at this checkout (see unit_kit).
"""

from __future__ import annotations

from pathlib import Path

import unit_kit as uk

SERVICE = "chatvault-export.service"
TIMER = "chatvault-export.timer"


def _copy_for_verify(tmp_path: Path) -> Path:
    return uk.copy_for_verify(tmp_path, SERVICE, "export run", others=(TIMER,))


@uk.needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    uk.assert_verifies(_copy_for_verify(tmp_path), SERVICE, TIMER)


@uk.needs_analyze
def test_exposure_is_low(tmp_path: Path) -> None:
    level, report = uk.exposure(_copy_for_verify(tmp_path), SERVICE)
    assert level <= 1.0, report


def test_service_is_hardened() -> None:
    d = uk.directives(SERVICE)
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
    d = uk.directives(TIMER)
    assert d["Timer.OnCalendar"] == ["daily"]
    assert d["Timer.Persistent"] == ["true"]
    assert d["Install.WantedBy"] == ["timers.target"]
