"""The exporter's ``config.toml``, validated: recipients, sources, media, limits, alerts.

:mod:`vault.config` reads the TOML, merges the defaults and refuses unknown
top-level keys. This module checks what the values mean and turns them into
typed settings. :func:`check` collects *every* problem (for
``chatvault export check-config``); :func:`load` raises the first one (for
the commands that need a usable config). Every message names the key and the
line, e.g. ``config.toml:14: key 'sources[1].timezone': unknown time zone``.

Relative paths are taken relative to the folder holding ``config.toml``.
Whether a source's path exists is checked by ``check-config`` and at run
time (a missing export fails that source only, not the run); the media path
may legitimately be absent (the stick is away), so it is only noted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault import config, keys, timestamps
from vault import media as mediafolders
from vault.errors import ChatvaultError, ConfigError

#: used with fullmatch: "$" also matches before a final newline ("web\n")
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: smallest bundle cap accepted: a few records must fit in one bundle
MIN_BUNDLE_BYTES = 64 * 1024
MAX_THREADS = 256

_RECIPIENT_KEYS = {"public_key"}
_SOURCE_KEYS = {"name", "format", "path", "timezone", "phone_region"}


@dataclass(frozen=True)
class Recipient:
    path: Path
    public: keys.PublicIdentity

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint


@dataclass(frozen=True)
class Source:
    name: str
    format: str
    path: Path
    timezone: str | None
    phone_region: str | None  # normalised ISO code ("UK" becomes "GB")

    def context(self) -> dict[str, Any]:
        """What travels in the signed bundle header so the vault reads it alike."""
        return {"format": self.format, "timezone": self.timezone,
                "phone_region": self.phone_region}


@dataclass(frozen=True)
class Alerts:
    export_overdue_hours: int
    unacknowledged_warning_days: int
    unacknowledged_critical_days: int


@dataclass(frozen=True)
class ExporterConfig:
    path: Path
    recipients: tuple[Recipient, ...]
    sources: tuple[Source, ...]
    media: Path
    max_bundle_bytes: int
    zstd_level: int
    threads: int  # as configured: 0 means one zstd worker per core
    alerts: Alerts
    #: a media folder on the machine's own disk is taken as no stick (media.not_a_stick)
    mounted_only: bool = True

    @property
    def recipient_fingerprints(self) -> set[str]:
        return {r.fingerprint for r in self.recipients}

    @property
    def writer_threads(self) -> int:
        """BundleWriter's ``threads``: -1 (one per core) for a configured 0."""
        return -1 if self.threads == 0 else self.threads

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)


@dataclass(frozen=True)
class Note:
    """Something check-config mentions without failing (e.g. media not mounted)."""

    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


class _Checker:
    """Walks a loaded config, collecting errors instead of stopping at the first."""

    def __init__(self, cfg: config.Config, check_paths: bool) -> None:
        self.cfg = cfg
        self.base = cfg.path.parent
        self.check_paths = check_paths
        self.errors: list[ConfigError] = []
        self.notes: list[Note] = []

    # -- where things are ---------------------------------------------------------

    def _line(self, table: str, index: int, key: str | None) -> int | None:
        """Line of ``key`` inside the ``index``-th ``[[table]]`` block (1-based)."""
        lines = self.cfg.text.splitlines()
        header = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]")
        starts = [i for i, line in enumerate(lines) if header.match(line)]
        if index >= len(starts):
            return None
        start = starts[index]
        if key is None:
            return start + 1
        pattern = re.compile(rf'^\s*("?){re.escape(key)}\1\s*=')
        for i in range(start + 1, len(lines)):
            if re.match(r"^\s*\[", lines[i]):
                break
            if pattern.match(lines[i]):
                return i + 1
        return start + 1

    def fail(self, table: str, index: int, key: str | None, problem: str) -> None:
        dotted = f"{table}[{index}]" + (f".{key}" if key else "")
        line = self._line(table, index, key)
        where = f"{self.cfg.path}:{line}" if line else str(self.cfg.path)
        self.errors.append(ConfigError(f"key {dotted!r}: {problem}", path=where))

    def fail_key(self, dotted: str, problem: str) -> None:
        self.errors.append(self.cfg.error(dotted, problem))

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path

    # -- tables ------------------------------------------------------------------

    def _blocks(self, table: str, allowed: set[str]) -> list[tuple[int, dict[str, Any]]]:
        items = self.cfg.get(table)
        if not isinstance(items, list) or not items:
            self.fail_key(table, f"at least one [[{table}]] block is required")
            return []
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.fail(table, i, None, f"expected a table ([[{table}]])")
                continue
            expected = ", ".join(sorted(allowed))
            for key in sorted(set(item) - allowed):
                self.fail(table, i, key, f"unknown key; expected one of {expected}")
            out.append((i, item))
        return out

    def _text(self, table: str, i: int, item: dict[str, Any], key: str,
              required: bool = True) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                self.fail(table, i, None, f"{key!r} is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(table, i, key, f"expected a non-empty string, got {value!r}")
            return None
        return value

    def recipients(self) -> list[Recipient]:
        found: list[Recipient] = []
        revoked = self.revoked()
        for i, item in self._blocks("recipients", _RECIPIENT_KEYS):
            text = self._text("recipients", i, item, "public_key")
            if text is None:
                continue
            path = self.resolve(text)
            try:
                pub = keys.load_public(path)
            except ChatvaultError as exc:
                self.fail("recipients", i, "public_key", f"{path}: {exc.detail}")
                continue
            if pub.role != "vault":
                self.fail("recipients", i, "public_key",
                          f"{path} is a {pub.role} key, not a vault key")
                continue
            revoked_at = revoked.get(pub.fingerprint)
            if revoked_at:
                self.fail("recipients", i, "public_key",
                          f"{pub.fingerprint} ({pub.name}) was revoked in this home's trust "
                          f"store at {revoked_at}: nothing is sealed to a revoked key; "
                          "remove this [[recipients]] block")
                continue
            if any(r.fingerprint == pub.fingerprint for r in found):
                self.fail("recipients", i, "public_key",
                          f"{pub.fingerprint} is already a recipient")
                continue
            found.append(Recipient(path, pub))
        return found

    def revoked(self) -> dict[str, str]:
        """Fingerprints revoked in the home's trust store, with when.

        ``keys revoke`` is how an operator says a vault's key is lost or
        compromised; sealing every new bundle to it went on until the config
        was edited too. A home without a readable trust store has nothing
        revoked here (the commands that need one say so).
        """
        from vault.trust import TrustStore

        try:
            store = TrustStore.load(self.base)
        except ChatvaultError:
            return {}
        return {fp: e.revoked_at for fp, e in store.entries.items() if e.revoked_at}

    def sources(self) -> list[Source]:
        from vault import sources as readers

        found: list[Source] = []
        # letter case folded: exFAT and FAT sticks hold Web-00000001.cvb and
        # web-00000001.cvb as one file
        names: dict[str, tuple[int, str]] = {}
        for i, item in self._blocks("sources", _SOURCE_KEYS):
            name = self._text("sources", i, item, "name")
            fmt = self._text("sources", i, item, "format")
            path_text = self._text("sources", i, item, "path")
            tz = self._text("sources", i, item, "timezone", required=False)
            region = self._text("sources", i, item, "phone_region", required=False)
            ok = None not in (name, fmt, path_text)
            if name is not None and not SOURCE_NAME.fullmatch(name):
                self.fail("sources", i, "name", f"{name!r} is not usable in file names: "
                          "letters, digits, '.', '_' and '-', at most 64, starting "
                          "with a letter or digit")
                ok = False
            elif name is not None and name.lower() in names:
                self._name_taken(i, name, *names[name.lower()])
                ok = False
            elif name is not None:
                names[name.lower()] = (i, name)
            if fmt is not None and not self._format_ok(readers, i, fmt):
                ok = False
            if tz is not None:
                try:
                    timestamps.zone(tz)
                except timestamps.TimestampError as exc:
                    self.fail("sources", i, "timezone", str(exc))
                    ok = False
            region_ok, region = self._region(i, region)
            ok = ok and region_ok
            if not ok:
                continue
            assert name and fmt and path_text
            path = self.resolve(path_text)
            if self.check_paths and not path.exists():
                self.fail("sources", i, "path", f"{path} does not exist")
            found.append(Source(name, fmt, path, tz, region or None))
        return found

    def _name_taken(self, i: int, name: str, first: int, other: str) -> None:
        """Source ``i`` is named as source ``first`` was, or so but for letter case."""
        line = self._line("sources", first, "name")
        where = f"{self.cfg.path}:{line}" if line else str(self.cfg.path)
        them = f"'sources[{first}].name' ({other!r}, {where})"
        if other == name:
            self.fail("sources", i, "name", f"{name!r} is used by another source: {them}")
        else:
            self.fail("sources", i, "name", f"{name!r} differs only in letter case from "
                      f"{them}: on a case-insensitive stick (exFAT, FAT) their bundle "
                      "files would be one file; name the source added last differently")

    def _format_ok(self, readers: Any, i: int, fmt: str) -> bool:
        if fmt not in readers.FORMATS:
            self.fail("sources", i, "format", f"unknown format {fmt!r}; one of "
                      f"{', '.join(readers.FORMATS)}")
            return False
        try:
            readers.module(fmt)
        except ImportError:
            self.fail("sources", i, "format", f"the {fmt!r} reader is not installed")
            return False
        return True

    def _region(self, i: int, region: str | None) -> tuple[bool, str | None]:
        """(valid, the ISO code) of a configured phone region ("UK" becomes "GB")."""
        from vault import identifiers

        try:
            return True, identifiers.region(region)
        except ValueError as exc:
            self.fail("sources", i, "phone_region", str(exc))
            return False, None

    def number(self, dotted: str, low: int, high: int) -> int:
        try:
            return config.expect_int(self.cfg, dotted, low, high)
        except ConfigError as exc:
            self.errors.append(exc)
            return low

    def flag(self, dotted: str) -> bool:
        try:
            return config.expect_bool(self.cfg, dotted)
        except ConfigError as exc:
            self.errors.append(exc)
            return True

    def media(self) -> Path:
        value = self.cfg["media"].get("path")
        if not isinstance(value, str) or not value:
            self.fail_key("media.path", f"expected a folder path, got {value!r}")
            return Path("/nonexistent")
        path = self.resolve(value)
        if self.check_paths and not path.is_dir():
            self.notes.append(Note(self.cfg.where("media.path"),
                                   f"{path} is not there now (no stick mounted?); "
                                   "'export run' will keep bundles in the local outbox"))
        return path


def _build(cfg: config.Config, check_paths: bool) -> tuple[ExporterConfig | None, _Checker]:
    c = _Checker(cfg, check_paths)
    recipients = c.recipients()
    srcs = c.sources()
    media = c.media()
    max_bytes = c.number("export.max_bundle_bytes", MIN_BUNDLE_BYTES, config.FAT32_MAX)
    level = c.number("export.zstd_level", 1, 22)
    threads = c.number("export.threads", 0, MAX_THREADS)
    overdue = c.number("alerts.export_overdue_hours", 1, 24 * 365)
    warn = c.number("alerts.unacknowledged_warning_days", 1, 3650)
    crit = c.number("alerts.unacknowledged_critical_days", 1, 3650)
    if warn > crit:
        c.fail_key("alerts.unacknowledged_warning_days",
                   f"{warn} is later than unacknowledged_critical_days ({crit})")
    mounted_only = c.flag("media.mounted_only")
    if check_paths and mounted_only and media.is_dir():
        why = mediafolders.not_a_stick(media, c.base)
        if why:
            c.notes.append(Note(cfg.where("media.path"), f"{media} {why}; 'export run' will "
                                "keep bundles in the local outbox"))
    if c.errors:
        return None, c
    return ExporterConfig(cfg.path, tuple(recipients), tuple(srcs), media, max_bytes, level,
                          threads, Alerts(overdue, warn, crit), mounted_only), c


def check(home: Path) -> tuple[ExporterConfig | None, list[ConfigError], list[Note]]:
    """Every problem in ``home``'s config, and notes; the config when there are none."""
    try:
        cfg = config.load(Path(home) / "config.toml", config.EXPORTER_DEFAULTS)
    except ConfigError as exc:
        return None, [exc], []
    built, checker = _build(cfg, check_paths=True)
    return built, checker.errors, checker.notes


def load(home: Path) -> ExporterConfig:
    """The usable config, or the first problem (mentioning how many more there are)."""
    cfg = config.load(Path(home) / "config.toml", config.EXPORTER_DEFAULTS)
    built, checker = _build(cfg, check_paths=False)
    if built is None:
        first = checker.errors[0]
        more = len(checker.errors) - 1
        if more:
            return _raise_with_more(first, more)
        raise first
    return built


def _raise_with_more(first: ConfigError, more: int) -> ExporterConfig:
    raise ConfigError(f"{first.detail} (and {more} more problem(s): run "
                      "'chatvault export check-config')", path=first.path)
