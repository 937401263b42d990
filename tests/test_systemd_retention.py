"""The retention units: valid for systemd, hardened, no network, daily and persistent.

As for the exporter's units, ``systemd-analyze verify`` runs on a copy whose
ExecStart points at a wrapper running this checkout (the shipped path,
``/usr/local/bin/chatvault``, may not exist on a test machine).
"""

from __future__ import annotations

from pathlib import Path

import unit_kit as uk

SERVICE = "chatvault-retention.service"
TIMER = "chatvault-retention.timer"


def _copy_for_verify(tmp_path: Path) -> Path:
    return uk.copy_for_verify(tmp_path, SERVICE, "retention apply", others=(TIMER,))


@uk.needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    uk.assert_verifies(_copy_for_verify(tmp_path), SERVICE, TIMER)


@uk.needs_analyze
def test_exposure_is_low(tmp_path: Path) -> None:
    level, report = uk.exposure(_copy_for_verify(tmp_path), SERVICE)
    assert level <= 1.0, report


def test_service_is_hardened_and_offline() -> None:
    d = uk.directives(SERVICE)
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateNetwork", "yes"), ("IPAddressDeny", "any"),
                       ("RestrictAddressFamilies", "AF_UNIX"), ("CapabilityBoundingSet", ""),
                       ("Type", "oneshot"), ("UMask", "0077"),
                       ("ReadWritePaths", "/var/lib/chatvault")]:
        assert d[f"Service.{key}"] == [value], key
    assert d["Service.ExecStart"] == ["/usr/local/bin/chatvault retention apply"]


def test_timer_is_daily_and_catches_up() -> None:
    d = uk.directives(TIMER)
    assert d["Timer.OnCalendar"] == ["daily"]
    assert d["Timer.Persistent"] == ["true"]
    assert d["Install.WantedBy"] == ["timers.target"]
