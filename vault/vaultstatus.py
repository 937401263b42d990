"""``vault status``: is the vault healthy, and what needs a person?

The report is built from a list of **checks**: plain functions taking a
:class:`Context` (home, store connection, config, the vault's clock) and
returning :class:`Finding` s, each with a level (OK / WARNING / CRITICAL,
exit 0 / 1 / 2 as monitoring plugins do; 3, UNKNOWN, when the command could
not judge: a usage error, a missing home, an unreadable config or store,
see :func:`vault.quickcli.guarded`), a one-line message for people
and data for ``--json`` and Prometheus. The worst level is the status.

Checks here: chain gaps, forks, quarantined bundles, overdue sources,
the clock, free disk, the audit chain, bundles waiting in staging, the
vault's secret key (present, 0600, readable, matching ``keys/public.key``:
without it nothing can be ingested, drilled or restored) and who may read
the store (it holds plaintext: 0600, like its ``-wal`` and ``-shm``). Other
modules add their own without touching this one: any module named in
:data:`CHECK_MODULES` that defines ``STATUS_CHECKS`` (a list of check
functions) is consulted when it is present (DSAR due dates, drill age...).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from vault import atomic, audit, chain, ingestlock, keys, promtext, staging, store
from vault import timestamps, vaultconfig
from vault.errors import ChatvaultError
from vault.home import Home

OK, WARNING, CRITICAL = 0, 1, 2
LEVELS = ("OK", "WARNING", "CRITICAL")
#: a bundle file name as exporters write it: what an unverified file claims to be
_CLAIMED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})-\d{8}\.cvb$")
CHECK_MODULES = ("vault.vaultstatus", "vault.dsar", "vault.retention", "vault.restore",
                 "vault.drillreports", "vault.daemon", "vault.requestrun",
                 "vault.erasurestatus", "vault.storecheck")


@dataclass(frozen=True)
class Finding:
    level: int
    check: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"level": LEVELS[self.level], "check": self.check, "message": self.message,
                "data": self.data}


@dataclass
class Context:
    home: Path
    conn: Any
    cfg: vaultconfig.VaultConfig
    now: datetime


Check = Callable[[Context], list[Finding]]


def _ts(text: str | None) -> datetime | None:
    return timestamps.parse(text) if text else None


def short_time(text: str | None) -> str:
    """A stored time as people read it: to the second, no fraction."""
    return re.sub(r"\.\d+Z$", "Z", text) if text else "-"


def _ago(then: datetime, now: datetime) -> str:
    hours = (now - then).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


# -- per-source picture ------------------------------------------------------------------

def sources(ctx: Context) -> list[dict[str, Any]]:
    """Last sequence, last ingest, gaps, forks and quarantine per source."""
    missing = chain.gaps(ctx.conn)
    rows = ctx.conn.execute(
        "SELECT s.name, max(b.sequence), max(b.ingested_at), "
        "(SELECT created_at FROM bundles x WHERE x.source = s.name "
        " ORDER BY x.sequence DESC LIMIT 1) FROM sources s "
        "LEFT JOIN bundles b ON b.source = s.name GROUP BY s.name ORDER BY s.name")
    out: dict[str, dict[str, Any]] = {}
    for name, seq, ingested, created in rows:
        out[name] = {"source": name, "last_sequence": seq, "last_ingest_at": ingested,
                     "last_created_at": created, "gaps": missing.get(name, []),
                     "forks": 0, "quarantined": 0}
    for name in ctx.cfg.sources:
        out.setdefault(name, {"source": name, "last_sequence": None, "last_ingest_at": None,
                              "last_created_at": None, "gaps": [], "forks": 0,
                              "quarantined": 0})
    for src, fork, n in _quarantined(ctx):
        if src in out:
            out[src]["forks" if fork else "quarantined"] += n
    for item in out.values():
        every = ctx.cfg.sources.get(item["source"], vaultconfig.SourceSettings())
        item["expected_every_hours"] = every.expected_every_hours
        last = _ts(item["last_ingest_at"])
        item["overdue"] = bool(every.expected_every_hours) and (
            last is None or ctx.now - last > timedelta(hours=every.expected_every_hours or 0))
    return sorted(out.values(), key=lambda s: s["source"])


def _quarantined(ctx: Context) -> list[tuple[str | None, bool, int]]:
    """(source, is a fork, count) of unresolved quarantine entries.

    A bundle refused before its header could be verified has no source of
    record; it is counted under the source its file name claims
    (``<source>-<sequence>.cvb``), or under None when it claims none.
    """
    counts: dict[tuple[str | None, bool], int] = {}
    for src, file, code in ctx.conn.execute(
            "SELECT source, file, code FROM quarantine WHERE resolved_at IS NULL"):
        if src is None:
            claim = _CLAIMED.fullmatch(file)
            src = claim.group(1) if claim else None
        key = (src, code == "fork")
        counts[key] = counts.get(key, 0) + 1
    return [(src, fork, n) for (src, fork), n in counts.items()]


def unattributed(ctx: Context) -> int:
    """Unresolved quarantine entries that belong to no source in the table."""
    known = {s["source"] for s in sources(ctx)}
    return sum(n for src, _, n in _quarantined(ctx) if src not in known)


# -- the checks ----------------------------------------------------------------------------

def check_chain(ctx: Context) -> list[Finding]:
    out = []
    for src, ranges in sorted(chain.gaps(ctx.conn).items()):
        text = ", ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in ranges)
        out.append(Finding(WARNING, "gaps", f"source {src}: bundles {text} missing "
                                            "(chain gap; bring the media that holds them)",
                           {"source": src, "missing": ranges}))
    return out


def check_quarantine(ctx: Context) -> list[Finding]:
    out = []
    for file, code, reason, src, seq, at, seen, path in ctx.conn.execute(
            "SELECT file, code, reason, source, sequence, at, last_seen_at, path "
            "FROM quarantine WHERE resolved_at IS NULL ORDER BY at"):
        data = {"file": file, "code": code, "source": src, "sequence": seq, "at": at,
                "last_seen_at": seen, "kept": path}
        if code == "fork":
            out.append(Finding(CRITICAL, "forks", f"{file}: FORK refused ({reason}); two "
                               "different bundles claim the same place in the chain: "
                               "investigate the exporter, then 'chatvault vault resolve "
                               f"{file}'", data))
        else:
            out.append(Finding(WARNING, "quarantine", f"{file} quarantined at "
                               f"{short_time(at)} (last seen {short_time(seen)}): {code} "
                               f"(kept: H/{path}; once dealt with: 'chatvault vault resolve "
                               f"{file}')", data))
    return out


def check_overdue(ctx: Context) -> list[Finding]:
    """Overdue sources; a configured one never received while others are (a misspelt name)."""
    out = []
    held = sorted(n for (n,) in ctx.conn.execute("SELECT DISTINCT source FROM bundles"))
    for item in sources(ctx):
        name = item["source"]
        if held and name not in held and name in ctx.cfg.sources and not item["overdue"]:
            out.append(Finding(WARNING, "never_received", f"source {name} is configured but "
                               "none of its bundles was ever ingested (held: "
                               f"{', '.join(held)}): if the name is misspelt, its retention "
                               "and alerts apply to nothing", {"source": name}))
        if not item["overdue"]:
            continue
        last = _ts(item["last_ingest_at"])
        when = f"last ingest {_ago(last, ctx.now)} ago" if last else "never received"
        out.append(Finding(WARNING, "overdue", f"source {item['source']} is overdue: {when}, "
                           f"expected every {item['expected_every_hours']:g} h",
                           {"source": item["source"], "last_ingest_at": item["last_ingest_at"]}))
    return out


def check_clock(ctx: Context) -> list[Finding]:
    """Bundles signed ahead of the vault's clock, or far behind its last ingest."""
    out = []
    ahead = timedelta(hours=ctx.cfg.clock_ahead_hours)
    behind = timedelta(days=ctx.cfg.clock_behind_days)
    last_ingest = _ts(ctx.conn.execute("SELECT max(ingested_at) FROM bundles").fetchone()[0])
    if last_ingest and ctx.now < last_ingest - timedelta(hours=1):
        then = timestamps.format_utc(last_ingest)
        out.append(Finding(WARNING, "clock", f"the vault's clock ({timestamps.format_utc(ctx.now)}"
                           f") is behind its own last ingest ({then}): was it set back? Due "
                           "dates and retention depend on it", {"last_ingest_at": then}))
    # per source the newest in the chain and the last received (a gap filled late)
    for src, seq, created, received in ctx.conn.execute(
            "SELECT source, sequence, created_at, received_at FROM bundles b WHERE sequence = "
            "(SELECT max(sequence) FROM bundles x WHERE x.source = b.source) OR sequence = "
            "(SELECT y.sequence FROM bundles y WHERE y.source = b.source "
            " ORDER BY y.received_at DESC, y.sequence DESC LIMIT 1) ORDER BY source, sequence"):
        signed_at, got = timestamps.parse(created), timestamps.parse(received)
        data = {"source": src, "sequence": seq, "created_at": created, "received_at": received}
        if signed_at - got > ahead:
            out.append(Finding(WARNING, "clock", f"{src} #{seq} was signed {_ago(got, signed_at)}"
                               " ahead of the vault's clock: check the vault's (or the "
                               "exporter's) clock", data))
        earlier = ctx.conn.execute("SELECT max(ingested_at) FROM bundles WHERE ingested_at < ?",
                                   (received,)).fetchone()[0]
        if earlier and timestamps.parse(earlier) - signed_at > behind:
            out.append(Finding(WARNING, "clock", f"{src} #{seq} was signed "
                               f"{_ago(signed_at, timestamps.parse(earlier))} before the ingest "
                               "that preceded it: one of the clocks is wrong", data))
    return out


def _disk(ctx: Context) -> dict[str, int]:
    usage = shutil.disk_usage(ctx.home)
    size = sum(p.stat().st_size for p in ctx.home.glob(store.FILE_NAME + "*") if p.is_file())
    archive = sum(p.stat().st_size for p in (ctx.home / "archive").rglob("*.cvb")
                  if p.is_file())
    return {"store_bytes": size, "archive_bytes": archive, "disk_free_bytes": usage.free,
            "disk_total_bytes": usage.total}


def check_disk(ctx: Context) -> list[Finding]:
    d = _disk(ctx)
    percent = 100.0 * d["disk_free_bytes"] / max(d["disk_total_bytes"], 1)
    text = f"{d['disk_free_bytes'] / 1024**3:.1f} GiB free ({percent:.1f}%) on the vault's disk"
    if percent < ctx.cfg.disk_free_critical_percent:
        return [Finding(CRITICAL, "disk", text + ": ingest will fail soon", d)]
    if percent < ctx.cfg.disk_free_warning_percent:
        return [Finding(WARNING, "disk", text, d)]
    return [Finding(OK, "disk", text, d)]


def check_audit(ctx: Context) -> list[Finding]:
    broken = audit.verify(ctx.conn)
    if broken is None:
        return []
    return [Finding(CRITICAL, "audit", f"{broken}: the audit log was tampered with",
                    {"seq": broken.seq, "problem": broken.problem})]


def check_staging(ctx: Context) -> list[Finding]:
    waiting = staging.pending(ctx.home)
    if not waiting or ingestlock.busy(ctx.home):
        return []  # staged bundles of the run going on are no leftovers
    return [Finding(WARNING, "staging", f"{len(waiting)} bundle(s) staged but not ingested "
                    "(an interrupted run?): run 'chatvault vault ingest' with the media or "
                    "restart the daemon", {"files": [s.bundle_file for s in waiting]})]


def check_secret_key(ctx: Context) -> list[Finding]:
    """The vault's secret key: present, owner-only, readable, the public key's twin."""
    h = Home(ctx.home)
    path, rel = h.secret_key, "keys/secret.key"
    data = {"path": str(path)}
    problem: str | None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    else:
        data["mode"] = f"{mode:04o}"
        problem = _key_problem(h, text, mode)
    if problem is None:
        return [Finding(OK, "secret_key", f"{rel} matches keys/public.key", data)]
    return [Finding(CRITICAL, "secret_key", f"{rel} {problem}: the vault cannot ingest, "
                    "drill or restore; restore the key from its backup (or fix it)", data)]


def _key_problem(h: Home, text: str, mode: int) -> str | None:
    if mode & 0o077:
        return f"is readable by others (mode {mode:04o}; chmod 600 it)"
    try:
        fingerprint, _ = keys.secret_fingerprint(text, "keys/secret.key")
    except ChatvaultError as exc:
        return f"is damaged ({exc.detail})"
    try:
        public = keys.load_public(h.public_key).fingerprint
    except ChatvaultError as exc:
        return f"cannot be checked: keys/public.key is unusable ({exc.detail})"
    if fingerprint != public:
        return f"belongs to {fingerprint}, not to this vault's public key {public}"
    return None


def check_store_mode(ctx: Context) -> list[Finding]:
    """The store holds plaintext: nobody but its owner should be able to read it."""
    loose = {}
    for path in sorted(ctx.home.glob(store.FILE_NAME + "*")):
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                loose[path.name] = f"{mode:04o}"
    if not loose:
        return []
    names = ", ".join(f"{n} ({m})" for n, m in loose.items())
    return [Finding(WARNING, "store_mode", f"the store holds plaintext but group or others "
                    f"may read it: {names}; chmod 600 {ctx.home / store.FILE_NAME}*",
                    {"files": loose})]


STATUS_CHECKS: list[Check] = [check_chain, check_quarantine, check_overdue, check_clock,
                              check_disk, check_audit, check_staging, check_secret_key,
                              check_store_mode]


def all_checks() -> list[Check]:
    """The checks of every present module named in :data:`CHECK_MODULES`."""
    found: list[Check] = []
    for name in CHECK_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        found += [c for c in getattr(mod, "STATUS_CHECKS", []) if c not in found]
    return found


def report(home: Path, now: datetime | None = None) -> dict[str, Any]:
    """The whole status: level, findings, per-source table, sizes."""
    home = Path(home)
    cfg = vaultconfig.load(home)
    conn = store.open_store(home / store.FILE_NAME)
    try:
        ctx = Context(home, conn, cfg, now or datetime.now(timestamps.UTC))
        findings = [f for check in all_checks() for f in check(ctx)]
        level = max([f.level for f in findings], default=OK)
        conversations = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        return {"status": LEVELS[level], "exit_code": level,
                "at": timestamps.format_utc(ctx.now), "sources": sources(ctx),
                "ingest_running": ingestlock.busy(home),
                "quarantined_unknown_source": unattributed(ctx),
                "store": {**_disk(ctx), "conversations": conversations},
                "findings": [f.as_dict() for f in findings if f.level > OK]}
    finally:
        conn.close()


# -- Prometheus textfile ------------------------------------------------------------------

def prometheus(rep: dict[str, Any]) -> str:
    """The report as Prometheus text exposition (for node_exporter's textfile collector)."""
    lines = []

    def metric(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP chatvault_vault_{name} {help_text}")
        lines.append(f"# TYPE chatvault_vault_{name} gauge")
        lines.extend(f"chatvault_vault_{name}{labels} {promtext.number(value)}"
                     for labels, value in samples)

    metric("status", "0 OK, 1 WARNING, 2 CRITICAL", [("", rep["exit_code"])])
    checks: dict[str, int] = {}
    for f in rep["findings"]:
        checks[f["check"]] = max(checks.get(f["check"], 0), LEVELS.index(f["level"]))
    metric("check_level", "worst level per check", [
        (f'{{check="{promtext.label(c)}"}}', v) for c, v in sorted(checks.items())])
    per = rep["sources"]

    def each(key: str, fn: Callable[[Any], float]) -> list[tuple[str, float]]:
        return [(f'{{source="{promtext.label(s["source"])}"}}', fn(s[key])) for s in per
                if s[key] is not None]

    metric("source_last_sequence", "highest sequence ingested", each("last_sequence", float))
    metric("source_last_ingest_timestamp_seconds", "when the source was last ingested",
           each("last_ingest_at", lambda t: timestamps.parse(t).timestamp()))
    metric("source_missing_bundles", "sequences missing in the chain",
           each("gaps", lambda g: sum(b - a + 1 for a, b in g)))
    metric("source_forks", "unresolved forks", each("forks", float))
    metric("source_quarantined_bundles", "unresolved quarantined bundles",
           each("quarantined", float))
    metric("source_overdue", "1 when the source is overdue", each("overdue", float))
    metric("quarantined_unknown_source", "unresolved quarantined files of no known source",
           [("", rep.get("quarantined_unknown_source", 0))])
    for key in ("store_bytes", "archive_bytes", "disk_free_bytes", "disk_total_bytes",
                "conversations"):
        metric(key, key.replace("_", " "), [("", rep["store"][key])])
    return "\n".join(lines) + "\n"


def write_prometheus(path: Path, rep: dict[str, Any]) -> None:
    # counts only, and node_exporter reads it as another user
    atomic.write_bytes(path, prometheus(rep).encode("utf-8"), 0o644)
