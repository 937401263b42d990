"""The vault's ``config.toml``, loaded and checked into typed settings.

:func:`vault.config.load` merges the file over ``VAULT_DEFAULTS`` and refuses
unknown keys; this module checks every value the vault acts on and turns the
result into :class:`VaultConfig`. Errors name the file, the key and its line
(``chatvault vault status`` and the daemon refuse to run on a bad config
rather than guess). ``[sources."<name>"]`` tables are checked here, since
their names are free: only ``expected_every_hours`` and ``retention_days``
may appear in them.

Every key is type-checked here, at load, whether or not the command at hand
uses it: ``four_eyes = "no"`` (a string, and a true one in Python) must stop
``vault status`` and every vault command with the key and its line, not
pass until the first erasure runs.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault import config as config_mod
from vault import identifiers
from vault.config import Config, VAULT_DEFAULTS, expect_bool, expect_int
from vault.errors import UsageError

SOURCE_KEYS = ("expected_every_hours", "retention_days")
#: Art. 15(1)(a)-(h), as keys of the ``[processing]`` register shown in DSAR packages
REGISTER_KEYS = ("controller", "purposes", "categories", "recipients", "retention",
                 "rights", "complaint", "source", "automated_decisions", "transfers")
_DEVICE_MATCH = re.compile(r"^(usb|any|[A-Z][A-Z0-9_]*=[^\s]+)$")
_MAX_DAYS = 100 * 366


@dataclass(frozen=True)
class SourceSettings:
    expected_every_hours: float | None = None
    retention_days: int | None = None


@dataclass(frozen=True)
class VaultConfig:
    path: Path
    phone_region: str | None
    retention_days: int
    max_plaintext_bytes: int
    device_match: str
    mount_root: Path
    delete_ingested: bool
    clock_ahead_hours: float
    clock_behind_days: float
    disk_free_warning_percent: float
    disk_free_critical_percent: float
    drill_interval_days: int = 90
    dsar_warning_days: int = 7
    four_eyes: bool = False
    redact_agent_names: bool = False
    processing: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceSettings] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def require_source(self, conn: Any, source: str | None, what: str) -> None:
        """Refuse a source name the vault neither stores nor configures (a typo).

        An unknown ``--source`` would otherwise answer "nothing found": for a
        data-subject request, a false "we hold nothing".
        """
        if source is None:
            return
        known = {n for (n,) in conn.execute("SELECT name FROM sources")} | set(self.sources)
        if source not in known:
            raise UsageError(f"no source named {source!r} is stored or configured (known: "
                             f"{', '.join(sorted(known)) or 'none'}): {what}")

    def retention_for(self, source: str) -> int:
        """Days conversations of ``source`` are kept (0 = no limit)."""
        own = self.sources.get(source, SourceSettings()).retention_days
        return self.retention_days if own is None else own

    def region_for(self, bundle_region: Any) -> str | None:
        """The phone region for a bundle: its own, else the vault's default."""
        if isinstance(bundle_region, str) and bundle_region.strip():
            try:
                return identifiers.region(bundle_region)
            except ValueError:
                return self.phone_region
        return self.phone_region


def _number(cfg: Config, dotted: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise cfg.error(dotted, f"expected a number, got {value!r}")
    if not low <= value <= high:
        raise cfg.error(dotted, f"must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _tables(cfg: Config) -> None:
    """Each table of the defaults given as a table (``erasure = 5`` is not one)."""
    for name, default in VAULT_DEFAULTS.items():
        if isinstance(default, dict) and not isinstance(cfg[name], dict):
            raise cfg.error(name, f"expected a table: [{name}]")


def _processing(cfg: Config) -> dict[str, Any]:
    """The ``[processing]`` register (Art. 15(1)(a)-(h)): known keys, text or texts."""
    out: dict[str, Any] = {}
    for key, value in cfg["processing"].items():
        if key not in REGISTER_KEYS:
            raise cfg.error(f"processing.{key}", f"unknown; one of {', '.join(REGISTER_KEYS)}")
        if not (isinstance(value, str) or isinstance(value, list) and all(
                isinstance(x, str) for x in value)):
            raise cfg.error(f"processing.{key}", "expected text or a list of texts")
        out[key] = value
    return out


def _sources(cfg: Config) -> dict[str, SourceSettings]:
    table = cfg["sources"]
    if not isinstance(table, dict):
        raise cfg.error("sources", 'expected tables: [sources."name"]')
    out = {}
    for name, body in table.items():
        where = f"sources.{name}"
        if not isinstance(body, dict):
            raise cfg.error(where, 'expected a table: [sources."name"]')
        for key in body:
            if key not in SOURCE_KEYS:
                raise cfg.error(f"{where}.{key}",
                                f"unknown key; one of {', '.join(SOURCE_KEYS)}")
        hours = body.get("expected_every_hours")
        days = body.get("retention_days")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
            raise cfg.error(f"{where}.retention_days", "expected a whole number of days")
        out[name] = SourceSettings(
            None if hours is None else _number(cfg, f"{where}.expected_every_hours", hours,
                                               0.1, 24 * _MAX_DAYS),
            None if days is None else int(_number(cfg, f"{where}.retention_days", days, 0,
                                                  _MAX_DAYS)))
    return out


def check(cfg: Config) -> VaultConfig:
    """Typed settings from a loaded config; ConfigError naming key and line."""
    _tables(cfg)
    region_text = cfg["defaults"]["phone_region"]
    if not isinstance(region_text, str):
        raise cfg.error("defaults.phone_region", 'expected a region code such as "GB", or ""')
    try:
        region = identifiers.region(region_text)
    except ValueError as exc:
        raise cfg.error("defaults.phone_region", str(exc)) from None

    daemon = cfg["daemon"]
    match = daemon["device_match"]
    if not isinstance(match, str) or not _DEVICE_MATCH.match(match):
        raise cfg.error("daemon.device_match",
                        f'expected "usb", "any" or "PROPERTY=value", got {match!r}')
    root = daemon["mount_root"]
    if not isinstance(root, str) or not root.startswith("/"):
        raise cfg.error("daemon.mount_root", f"expected an absolute path, got {root!r}")
    if not isinstance(daemon["delete_ingested"], bool):
        raise cfg.error("daemon.delete_ingested", "expected true or false")

    alerts = cfg["alerts"]
    warn = _number(cfg, "alerts.disk_free_warning_percent",
                   alerts["disk_free_warning_percent"], 0, 100)
    crit = _number(cfg, "alerts.disk_free_critical_percent",
                   alerts["disk_free_critical_percent"], 0, 100)
    if crit > warn:
        raise cfg.error("alerts.disk_free_critical_percent",
                        "must not be above disk_free_warning_percent")
    return VaultConfig(
        path=cfg.path, phone_region=region,
        retention_days=expect_int(cfg, "defaults.retention_days", 0, _MAX_DAYS),
        max_plaintext_bytes=expect_int(cfg, "limits.max_plaintext_bytes", 1024, 2**62),
        device_match=match, mount_root=Path(root), delete_ingested=daemon["delete_ingested"],
        clock_ahead_hours=_number(cfg, "alerts.clock_ahead_hours",
                                  alerts["clock_ahead_hours"], 0, 24 * _MAX_DAYS),
        clock_behind_days=_number(cfg, "alerts.clock_behind_days",
                                  alerts["clock_behind_days"], 0, _MAX_DAYS),
        disk_free_warning_percent=warn, disk_free_critical_percent=crit,
        drill_interval_days=expect_int(cfg, "alerts.drill_interval_days", 0, 3660),
        dsar_warning_days=expect_int(cfg, "alerts.dsar_warning_days", 0, 366),
        four_eyes=expect_bool(cfg, "erasure.four_eyes"),
        redact_agent_names=expect_bool(cfg, "dsar.redact_agent_names"),
        processing=_processing(cfg), sources=_sources(cfg), raw=dict(cfg))


def load(home: Path) -> VaultConfig:
    """Load and check ``H/config.toml`` of a vault home."""
    cfg = check(config_mod.load(Path(home) / "config.toml", VAULT_DEFAULTS))
    _require_vault_key(Path(home))
    return cfg


_ROLE = re.compile(rb"^Role: *([a-z]+) *$", re.M)


def _require_vault_key(home: Path) -> None:
    """Refuse a home whose key is not a vault's (exit 2), before anything is made in it.

    A requester's config has no keys at all, so it reads as a vault's with
    every default: 'vault ingest' made staging folders in a DPO's home and
    said the vault's store was lost. The role is read from the public key's
    text (no signature check here: only which kind of home this is).
    """
    try:  # os, not vault.atomic: subject find must stay light (tests/test_quickcli_imports)
        fd = os.open(home / "keys" / "public.key", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # no readable key: the command's own checks name what is missing
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        text = os.read(fd, 64 * 1024)
    finally:
        os.close(fd)
    found = _ROLE.search(text)
    if found and found.group(1) != b"vault":
        role = found.group(1).decode()
        raise UsageError(f"{home} is {'an' if role[0] in 'aeiou' else 'a'} {role} home "
                         "(keys/public.key); vault commands need a vault home: is --home "
                         "right?")
