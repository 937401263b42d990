"""``config.toml`` of a home: defaults, loading, and errors that name key and line.

Both sides read ``H/config.toml`` with :mod:`tomllib`. Every key has a
default except the exporter's ``recipients`` and ``sources``; unknown keys are
reported (a typo would otherwise silently change nothing). Errors name the
file, the key and the line, for ``chatvault export check-config`` and for
every command that loads a config.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

from vault.errors import ConfigError, NotAHome

FAT32_MAX = 4 * 1024**3 - 1

EXPORTER_DEFAULTS: dict[str, Any] = {
    "recipients": [],
    "sources": [],
    "media": {"path": "/media/chatvault", "mounted_only": True},
    "export": {"max_bundle_bytes": 1024**3, "zstd_level": 3, "threads": 0},
    "alerts": {"export_overdue_hours": 26, "unacknowledged_warning_days": 3,
               "unacknowledged_critical_days": 8},
}

VAULT_DEFAULTS: dict[str, Any] = {
    "daemon": {"device_match": "usb", "mount_root": "/run/chatvault/media",
               "delete_ingested": False},
    "defaults": {"phone_region": "GB", "retention_days": 0},
    "limits": {"max_plaintext_bytes": 64 * 1024**3},
    "sources": {},
    "alerts": {"clock_ahead_hours": 24, "drill_interval_days": 90,
               "dsar_warning_days": 7, "clock_behind_days": 30,
               "disk_free_warning_percent": 10, "disk_free_critical_percent": 3},
    "erasure": {"four_eyes": False},
    "dsar": {"redact_agent_names": False},
    "processing": {},
}


_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_NAME = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)')
_ASSIGN = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*=')


def _names(header: str) -> list[str]:
    """``sources."a.b"`` -> ["sources", "a.b"] (quotes keep dots inside names)."""
    return [m.group(1) or m.group(2) or m.group(3) or "" for m in _NAME.finditer(header)]


def _line_of(text: str, dotted: str) -> int | None:
    """The line that sets ``dotted`` (``a.b.key``, ``sources[2].path``), table-aware.

    Falls back to the line of the table header when the key itself is not
    written (a missing key, or a table that is wrong as a whole).
    """
    current = ""
    counts: dict[str, int] = {}
    header_line = None
    for n, line in enumerate(text.splitlines(), 1):
        head = _HEADER.match(line)
        if head:
            current = ".".join(_names(head.group(2)))
            if head.group(1) == "[[":
                if current == dotted and header_line is None:  # the array as a whole
                    header_line = n
                counts[current] = counts.get(current, -1) + 1
                current = f"{current}[{counts[current]}]"
            if current == dotted:
                header_line = n
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = _names(assign.group(1))[0]
            if (f"{current}.{key}" if current else key) == dotted:
                return n
    if header_line is None and "." in dotted:
        return _line_of(text, dotted.rsplit(".", 1)[0])
    return header_line


def _where(path: Path, text: str, dotted: str) -> str:
    line = _line_of(text, dotted)
    return f"{path}:{line}" if line else str(path)


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and out[key]:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _other_side(prefix: str, key: str, defaults: dict[str, Any]) -> str:
    """A hint when a top-level key belongs to the other kind of home."""
    if prefix:
        return ""
    for name, other in (("an exporter", EXPORTER_DEFAULTS), ("a vault", VAULT_DEFAULTS)):
        if other is not defaults and key in other and key not in defaults:
            return f"; this looks like the config of {name} home: is --home right?"
    return ""


def _check_unknown(path: Path, text: str, defaults: dict[str, Any],
                   given: dict[str, Any], prefix: str = "") -> None:
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.75)
            hint = _other_side(prefix, key, defaults) or (
                f"; did you mean {prefix + close[0]!r}?" if close else "")
            raise ConfigError(f"unknown key {dotted!r}{hint}", path=_where(path, text, dotted))
        template = defaults[key]
        if isinstance(template, dict) and template and isinstance(value, dict):
            _check_unknown(path, text, template, value, dotted + ".")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not (path.parent / "keys" / "public.key").is_file():
            # the same error as every other command given a wrong --home
            raise NotAHome(path.parent) from None
        raise ConfigError("config file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    if text.startswith("\ufeff"):
        # a byte order mark, as some Windows editors write: TOML allows none, but it is
        # plainly no content; the line numbers in messages stay the same without it
        text = text[1:]
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None


class Config(dict):  # type: ignore[type-arg]
    """A loaded config: the merged dict, plus where it came from for messages."""

    path: Path
    text: str

    def where(self, dotted: str) -> str:
        return _where(self.path, self.text, dotted)

    def error(self, dotted: str, problem: str) -> ConfigError:
        return ConfigError(f"key {dotted!r}: {problem}", path=self.where(dotted))


def load(path: Path, defaults: dict[str, Any]) -> Config:
    given, text = read_toml(path)
    _check_unknown(path, text, defaults, given)
    cfg = Config(_merge(defaults, given))
    cfg.path, cfg.text = path, text
    return cfg


def expect_bool(cfg: Config, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    if not isinstance(node, bool):
        raise cfg.error(dotted, f"expected true or false (no quotes), got {node!r}")
    return node


def expect_int(cfg: Config, dotted: str, low: int, high: int) -> int:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int):
        raise cfg.error(dotted, f"expected an integer, got {node!r}")
    if not low <= node <= high:
        raise cfg.error(dotted, f"must be between {low} and {high}, got {node}")
    return node
