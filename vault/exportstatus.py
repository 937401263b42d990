"""``export status``: what waits, what failed, what a vault refused; OK, WARNING, CRITICAL.

The exit code follows the monitoring-plugins convention (0 OK, 1 WARNING,
2 CRITICAL; 3 UNKNOWN when it could not judge: a usage error, a missing
home, an unreadable config, see :func:`vault.quickcli.guarded`), so the
command works as a Nagios/Icinga check as it is, and ``--prometheus FILE``
writes the same facts as a node-exporter textfile.

Alerts, with the thresholds of the config's ``[alerts]`` table:

* CRITICAL: the state database is missing or older than the chains this
  home has sealed (:func:`vault.exportrecovery.check_state`: the next run would
  fork); a vault reported a bundle quarantined (until a later receipt of
  that vault says it was ingested, ``export reseal`` sealed its conversations
  again or a person ran ``export resolve``), with what to do for the case at
  hand; a bundle unacknowledged for ``unacknowledged_critical_days``; a
  configured source with no successful export for ``export_overdue_hours``
  (the vault's copy is going stale); an unacknowledged bundle whose local
  copy is gone (it can no longer be rewritten to a stick: reseal).
* WARNING: a bundle unacknowledged for ``unacknowledged_warning_days``; the
  last run ended with a non-zero exit code or did not finish; the last run
  failed while bundles are on no stick yet (no stick mounted); the last run
  refused receipts (forged, altered, of another vault); no run yet; a
  vault refused a damaged stray copy of a bundle it already holds and the
  copy was not found on a stick to remove (nothing is lost).

The vaults' receipts also state their audit log's position; a log rewritten
or cut short is CRITICAL, a new chain (a rebuild) a WARNING, until a person
who checked dismisses it (``export resolve audit-…``; :func:`vault.auditwatch.audit_findings`).
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vault import acks, atomic, auditwatch, promtext, timestamps
from vault.errors import EXIT_MEDIA
from vault.exportconfig import ExporterConfig
from vault.exportstate import LOCK_NAME, ExportState

OK, WARNING, CRITICAL = 0, 1, 2
LEVELS = ("OK", "WARNING", "CRITICAL")


def _age(since: str | None, now: datetime) -> timedelta | None:
    if not since:
        return None
    try:
        return now - timestamps.parse(since)
    except timestamps.TimestampError:
        return None


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return timestamps.parse(text).timestamp()
    except timestamps.TimestampError:
        return None


def _running(home: Path) -> bool:
    """Whether an export command holds the state lock right now."""
    path = Path(home) / "state" / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class _Report:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def alert(self, level: int, message: str) -> None:
        self.alerts.append({"level": LEVELS[level], "message": message})

    @property
    def level(self) -> int:
        return max((LEVELS.index(a["level"]) for a in self.alerts), default=OK)


def _sources(cfg: ExporterConfig, state: ExportState, now: datetime,
             out: _Report) -> list[dict[str, Any]]:
    names = [s.name for s in cfg.sources]
    names += [n for n in state.known_sources() if n not in names]
    overdue = timedelta(hours=cfg.alerts.export_overdue_hours)
    rows = []
    for name in names:
        seq, _ = state.chain(name)
        hist = state.source_history(name)
        configured = cfg.source(name) is not None
        rows.append({"name": name, "configured": configured, "last_sequence": seq, **hist})
        if not configured:
            continue
        since = _age(hist["last_success_at"], now)
        if since is not None and since > overdue:
            out.alert(CRITICAL, f"source {name}: no successful export for "
                      f"{since.total_seconds() / 3600:.0f} h (limit "
                      f"{cfg.alerts.export_overdue_hours} h)")
        elif since is None and hist["last_run_at"]:
            out.alert(CRITICAL, f"source {name}: never exported successfully; last run: "
                      f"{hist['last_message']}")
        if hist["last_exit_code"]:
            out.alert(WARNING, f"source {name}: last run ended with exit code "
                      f"{hist['last_exit_code']}: {hist['last_message']}")
    return rows


def _waiting(home: Path, cfg: ExporterConfig, state: ExportState, now: datetime,
             out: _Report) -> list[dict[str, Any]]:
    warn = timedelta(days=cfg.alerts.unacknowledged_warning_days)
    crit = timedelta(days=cfg.alerts.unacknowledged_critical_days)
    rows = []
    for row in state.bundles(unacknowledged=True):
        if row.abandoned_at:
            continue
        age = _age(row.created_at, now) or timedelta(0)
        acked = {a.vault for a in state.acks(row.sha256) if a.status in acks.ACKNOWLEDGING}
        missing = sorted(acks.required_vaults(row, cfg) - acked)
        local = (Path(home) / "outbox" / row.file_name).is_file()
        rows.append({**row.describe(), "age_days": round(age.total_seconds() / 86400, 2),
                     "on_media": row.media_written_at is not None,
                     "acknowledged_by": sorted(acked), "waiting_for": missing,
                     "local_copy": local})
        days = f"{age.total_seconds() / 86400:.1f} days"
        if not local:
            out.alert(CRITICAL, f"{row.file_name}: local copy missing while unacknowledged; "
                      "it can no longer be rewritten: 'chatvault export reseal "
                      f"{row.source}' seals its conversations again")
        if age >= crit:
            out.alert(CRITICAL, f"{row.file_name} unacknowledged for {days} "
                      f"(waiting for {', '.join(missing)})")
        elif age >= warn:
            out.alert(WARNING, f"{row.file_name} unacknowledged for {days} "
                      f"(waiting for {', '.join(missing)})")
    return rows


def _action(r: acks.Report, local: bool) -> str:
    """What the operator does about an open quarantine report."""
    if not local:
        return (f"its local copy is gone, so it cannot be written again: 'chatvault export "
                f"reseal {r.bundle.source}' seals its conversations again in a new bundle")
    if r.damaged_copy:
        return ("'chatvault export run' with that stick replaces the damaged copy by a good "
                "copy (unless done already); then bring the stick to the vault again")
    return (f"the vault refused the bundle itself: fix the cause there, then 'chatvault export "
            f"resolve {r.bundle.file_name} --note \"...\"'")


def _quarantined(home: Path, state: ExportState, out: _Report) -> dict[str, Any]:
    """Quarantine reports: open ones alert, strays and settled ones are listed."""
    found: dict[str, list[dict[str, Any]]] = {"quarantined": [], "strays": [], "resolved": []}
    for r in acks.reports(state):
        name = r.bundle.file_name
        if r.kind == "stray":
            found["strays"].append(r.describe())
            if r.is_open:
                out.alert(WARNING, f"vault {r.vault} refused a damaged stray copy of {name}, "
                          "which it already holds (nothing is lost); 'chatvault export run' "
                          "with the stick holding that copy removes it, or 'chatvault export "
                          f"resolve {name} --note \"...\"' once it is gone")
            continue
        if not r.is_open:
            found["resolved"].append(r.describe())
            continue
        found["quarantined"].append(r.describe())
        local = (Path(home) / "outbox" / name).is_file()
        out.alert(CRITICAL, f"vault {r.vault} quarantined {name}: {r.reason or 'no reason'} "
                  f"-> {_action(r, local)}")
    return found


def _audit(state: ExportState, out: _Report) -> dict[str, Any]:
    """Audit findings from the vaults' receipts; each vault's last position seen."""
    found = auditwatch.audit_findings(state)
    for f in found:
        out.alert(LEVELS.index(f.level), f.message())
    last: dict[str, tuple[float, dict[str, Any]]] = {}
    for vault, chain, entries, head, at, receipt in state.audit_seen():
        moment = _epoch(at)
        if moment is not None and (vault not in last or moment >= last[vault][0]):
            last[vault] = (moment, {"vault": vault, "chain": chain, "entries": entries,
                                    "head": head, "receipt_at": at, "receipt": receipt})
    return {"findings": [f.describe() for f in found], "resolved": state.audit_resolutions(),
            "vaults": [seen for _, (_, seen) in sorted(last.items())]}


def _off_media(last: dict[str, Any] | None, waiting: list[dict[str, Any]],
               out: _Report) -> None:
    """A run that failed while bundles are on no stick: most likely no stick was mounted.

    Said at once, not only when the bundles turn ``unacknowledged_warning_days``
    old: the operator would otherwise carry an empty stick to the vault.
    """
    if last is None or last["finished_at"] is None or not last["exit_code"]:
        return
    off = [r["file"] for r in waiting if not r["on_media"] and r["local_copy"]]
    if off:
        out.alert(WARNING, f"the last run ended with exit code {last['exit_code']} and "
                  f"{len(off)} bundle(s) are on no stick yet ({', '.join(off[:3])}"
                  f"{', ...' if len(off) > 3 else ''}): mount the stick and run 'chatvault "
                  "export run' (or 'export rewrite --media DIR')")
    elif last["exit_code"] == EXIT_MEDIA:  # nothing new, but no stick either: no receipts
        out.alert(WARNING, "the last run could not use the stick (exit 5: none mounted, "
                  "full or read-only; see its output): the vaults' receipts were not read; "
                  "mount the stick and run 'chatvault export run'")


def _refused_receipts(last: dict[str, Any] | None, out: _Report) -> None:
    """Receipts the last run refused: forged, altered, or of a vault not configured.

    The timer runs ``export run --quiet``: without this the refusal stays in
    the journal, and evidence that someone altered files on the stick with it.
    """
    summary = (last or {}).get("summary") or {}
    refused = summary.get("receipts_refused")
    if isinstance(refused, int) and refused > 0:
        first = summary.get("first_receipt_refused") or ""
        out.alert(WARNING, f"the last run refused {refused} receipt(s) on the stick "
                  f"(first: {str(first)[:300]}); a receipt that does not verify was altered "
                  "or forged: find out who handled the stick")


def gather(home: Path, cfg: ExporterConfig, state: ExportState,
           now: datetime | None = None) -> dict[str, Any]:
    """The whole status as one JSON-ready document, alerts and level included."""
    from vault.exportrecovery import check_state

    now = now or datetime.now(timestamps.UTC)
    out = _Report()
    problem = check_state(Path(home), cfg, state)
    if problem is not None:
        out.alert(CRITICAL, problem.detail)
    last = state.last_run("run")
    running = _running(home)
    if last is None:
        out.alert(WARNING, "no export run yet")
    elif last["finished_at"] is None and not running:
        out.alert(WARNING, f"the run started at {last['started_at']} did not finish "
                  "(killed?); the next run recovers")
    srcs = _sources(cfg, state, now, out)
    waiting = _waiting(home, cfg, state, now, out)
    _off_media(last, waiting, out)
    _refused_receipts(last, out)
    reports = _quarantined(home, state, out)
    audit_log = _audit(state, out)
    abandoned = [r.describe() for r in state.bundles(unacknowledged=True) if r.abandoned_at]
    return {"status": LEVELS[out.level], "exit_code": out.level, "alerts": out.alerts,
            "generated_at": timestamps.format_utc(now), "running": running,
            "last_run": last, "sources": srcs, "unacknowledged": waiting, **reports,
            "abandoned": abandoned, "audit": audit_log}


def prometheus(report: dict[str, Any]) -> str:
    """The status as Prometheus text exposition (for node-exporter's textfile collector)."""
    metrics: dict[str, tuple[str, list[tuple[str, float]]]] = {}

    def put(name: str, help_text: str, value: float | None, source: str | None = None) -> None:
        if value is None:
            return
        labels = f'{{source="{promtext.label(source)}"}}' if source is not None else ""
        metrics.setdefault(name, (help_text, []))[1].append((labels, value))

    put("chatvault_export_status", "0 OK, 1 WARNING, 2 CRITICAL", report["exit_code"])
    put("chatvault_export_status_generated_timestamp_seconds", "When this file was written",
        _epoch(report["generated_at"]))
    found = report["audit"]["findings"]
    put("chatvault_export_audit_findings", "Open findings about a vault's audit log "
        "(rewritten, cut, new chain)", len(found))
    put("chatvault_export_audit_critical_findings", "Of those, the critical ones "
        "(rewritten or cut)", sum(1 for f in found if f["level"] == "CRITICAL"))
    for s in report["sources"]:
        name = s["name"]
        put("chatvault_export_last_run_timestamp_seconds", "Last export run of the source",
            _epoch(s["last_run_at"]), name)
        put("chatvault_export_last_success_timestamp_seconds",
            "Last export run of the source that ended well", _epoch(s["last_success_at"]), name)
        put("chatvault_export_last_exit_code", "Exit code of the source in the last run",
            s["last_exit_code"], name)
        put("chatvault_export_last_sequence", "Sequence number of the last bundle sealed",
            s["last_sequence"], name)
        waiting = [w for w in report["unacknowledged"] if w["source"] == name]
        put("chatvault_export_unacknowledged_bundles", "Bundles not yet acknowledged by "
            "every vault", len(waiting), name)
        put("chatvault_export_unacknowledged_bytes", "Bytes of those bundles",
            sum(w["size"] for w in waiting), name)
        put("chatvault_export_oldest_unacknowledged_age_seconds",
            "Age of the oldest unacknowledged bundle",
            max((w["age_days"] * 86400 for w in waiting), default=0), name)
        put("chatvault_export_quarantined_bundles", "Bundles a vault reported quarantined",
            sum(1 for q in report["quarantined"] if q["source"] == name), name)
    lines = []
    for name, (help_text, samples) in metrics.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {promtext.number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def write_prometheus(report: dict[str, Any], path: Path) -> None:
    """Write the textfile atomically, so the collector never reads half of it."""
    # counts only, and node_exporter reads it as another user
    atomic.write_bytes(path, prometheus(report).encode("utf-8"), 0o644)


def render(report: dict[str, Any]) -> list[str]:
    """Lines for people: the plugin-style first line, alerts, sources, what waits."""
    waiting = report["unacknowledged"]
    lines = [f"CHATVAULT EXPORT {report['status']} - {len(waiting)} bundle(s) waiting for "
             f"acknowledgement, {len(report['quarantined'])} quarantine report(s)"]
    lines += [f"  {a['level']:8} {a['message']}" for a in report["alerts"]]
    lines.append("")
    lines.append(f"{'source':24} {'last run':28} {'exit':>4}  {'last success':28} {'seq':>6}")
    for s in report["sources"]:
        exit_code = "-" if s["last_exit_code"] is None else str(s["last_exit_code"])
        lines.append(f"{s['name']:24} {s['last_run_at'] or 'never':28} {exit_code:>4}  "
                     f"{s['last_success_at'] or 'never':28} {s['last_sequence']:>6}")
    vaults = report["audit"]["vaults"]
    if vaults:
        lines.append("")
        lines.append("audit log of each vault, as the last receipt it signed showed it:")
        lines += [f"  {v['vault']}  chain {v['chain'][:16]}  {v['entries']:>8} entries  head "
                  f"{v['head'][:16]}  ({v['receipt_at']})" for v in vaults]
    if waiting:
        lines.append("")
        lines.append("waiting for acknowledgement:")
        for w in waiting:
            where = "on media" if w["on_media"] else "not yet on media"
            lines.append(f"  {w['file']:32} {w['age_days']:>7.2f} days  {w['size']:>12} bytes"
                         f"  {where}; waiting for {', '.join(w['waiting_for'])}")
    return lines
