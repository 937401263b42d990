"""``chatvault export ...``: the online exporter.

run, status, receipts, rewrite, check-config; and for what a vault refused:
resolve (settle a quarantine report by hand, or dismiss an audit finding a
person checked), reseal (seal the conversations of bundles lost before any
vault had them again).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional

import typer

from vault.cli.common import (HomeOpt, JsonOpt, QuietOpt, emit_json, resolve_home, say,
                              show_progress, status_output)

if TYPE_CHECKING:
    from vault.exporter import RunReport
    from vault.exportmedia import Progress

app = typer.Typer(no_args_is_help=True)

MediaOpt = Annotated[Optional[Path], typer.Option(
    "--media", help="Where the stick is mounted (default: the media path in the config)")]
PassOpt = Annotated[Optional[Path], typer.Option(
    "--passphrase-file", help="Passphrase of the exporter's secret key")]


class _Bars:
    """rich progress bars on stderr, one task at a time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             TaskProgressColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=True)
        self.task: Any = None

    def begin(self, label: str, total: int | None) -> None:
        self.end()
        self.task = self.bars.add_task(label, total=total or None)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.bars.advance(self.task, amount)

    def end(self) -> None:
        if self.task is not None:
            self.bars.remove_task(self.task)
            self.task = None


@contextmanager
def _progress(quiet: bool) -> Iterator["Progress | None"]:
    if not show_progress(quiet):
        yield None
        return
    bars = _Bars()
    with bars.bars:
        yield bars


def _n(value: int) -> str:
    return f"{value:,}"


def _summary(report: "RunReport") -> list[str]:
    lines = [f"recovered: {note}" for note in report.recovered]
    for s in report.sources:
        state = "ok" if s.exit_code == 0 else f"exit {s.exit_code}"
        lines.append(f"{s.name}: {state}; {_n(s.seen)} conversations read "
                     f"({_n(s.bytes_in)} bytes in), {_n(s.conversations)} new or changed "
                     f"({_n(s.messages)} messages) sealed into {len(s.bundles)} bundle(s)")
        lines += [f"  {b['file']}  #{b['sequence']}  {_n(b['size'])} bytes  "
                  f"sha256 {b['sha256'][:16]}…" for b in s.bundles]
        lines += [f"  problem: {e}" for e in s.errors]
        if s.problems_not_listed:
            lines.append(f"  ... and {_n(s.problems_not_listed)} more problem(s) "
                         "(CHATVAULT_LOG=DEBUG lists every one)")
    if report.receipts is not None:
        r = report.receipts
        lines.append(f"receipts: {r.count('acknowledged')} acknowledged, "
                     f"{r.count('quarantined')} quarantine report(s), {r.count('refused')} "
                     f"refused, {r.count('already')} already known, {r.count('ignored')} "
                     f"of other exporters; {len(r.completed)} bundle(s) now safe everywhere")
        lines += [f"  QUARANTINED {o.bundle} by vault {o.vault}: {o.reason}"
                  for o in r.outcomes if o.result == "quarantined"]
        lines += [f"  stray copy: {o.bundle}: {o.reason}" for o in r.outcomes
                  if o.result == "stray"]
        if r.damaged_removed:
            lines.append(f"  damaged copies removed from the stick: "
                         f"{', '.join(r.damaged_removed)} (a run with our copy writes a good "
                         "one)")
        lines += [f"  refused {o.file} ({o.error}): {o.reason}"
                  for o in r.outcomes if o.result == "refused"]
        lines += [f"  AUDIT {f['level']} {f['message']}" for f in r.audit_findings]
        settled = [n for n in r.removed_from_media if n not in r.damaged_removed]
        if settled:
            lines.append(f"  removed from the stick: {', '.join(settled)}")
        if r.error:
            lines.append(f"  {r.error}")
    if report.media is None and report.media_path:
        lines.append(f"media {report.media_path}: receipts read; nothing written")
    if report.media is not None:
        m = report.media
        lines.append(f"media {m.path}: {len(m.written)} bundle(s) written and verified "
                     f"({_n(m.bytes_written)} bytes), {m.already} already there")
        lines += [f"  {e}" for e in m.unwritable]
        if m.error and m.error not in m.unwritable:
            lines.append(f"  {m.error}")
        if m.error and m.waiting:
            lines.append(f"  {m.waiting} bundle(s) ({_n(m.bytes_waiting)} bytes) wait in the "
                         "local outbox for the next run (or 'chatvault export rewrite "
                         "--media DIR')")
    if report.command == "run":
        t = report.totals()
        lines.append(f"total: {_n(t['conversations'])} conversations, {_n(t['messages'])} "
                     f"messages, {_n(t['bytes_in'])} bytes in, {_n(t['bytes_sealed'])} bytes "
                     f"sealed, {t['bundles']} bundle(s)")
    return lines


def _errors(report: "RunReport") -> list[str]:
    """The failures alone, for stderr when stdout carries JSON."""
    lines = [f"{s.name}: {e}" for s in report.sources for e in s.errors]
    if report.receipts is not None:
        lines += [f"receipt {o.file} {o.result}: {o.reason}" for o in report.receipts.outcomes
                  if o.result in ("refused", "quarantined")]
        lines += [str(report.receipts.error)] if report.receipts.error else []
    if report.media is not None and report.media.error:
        lines.append(str(report.media.error))
    return lines


def _finish(report: "RunReport", as_json: bool) -> None:
    if as_json:
        emit_json(report.describe())
        for line in _errors(report):
            say(f"chatvault: {line}")
    else:
        for line in _summary(report):
            say(line)
    raise typer.Exit(report.exit_code)


@app.command("run")
def run(home: HomeOpt = None, media: MediaOpt = None, passphrase_file: PassOpt = None,
        as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Seal new and changed conversations, then write every waiting bundle to the media."""
    from vault import exporter

    with _progress(quiet) as bars:
        report = exporter.run(resolve_home(home), media=media,
                              passphrase_file=passphrase_file, progress=bars)
    _finish(report, as_json)


@app.command("receipts")
def receipts(home: HomeOpt = None, media: MediaOpt = None, as_json: JsonOpt = False) -> None:
    """Verify the vaults' receipts on the media; let go of bundles every vault holds."""
    from vault import exporter

    _finish(exporter.receipts(resolve_home(home), media=media), as_json)


@app.command("rewrite")
def rewrite(home: HomeOpt = None, media: MediaOpt = None, as_json: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Write every unacknowledged bundle to the media again (a lost or broken stick)."""
    from vault import exporter

    with _progress(quiet) as bars:
        report = exporter.rewrite(resolve_home(home), media=media, progress=bars)
    _finish(report, as_json)


@app.command("status")
def status(
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    prometheus: Annotated[Optional[Path], typer.Option(
        "--prometheus", help="Also write Prometheus textfile metrics to this file")] = None,
) -> None:
    """Last runs, bundles waiting for acknowledgement, quarantine reports. Exit 0/1/2."""
    from vault import exportconfig, exportstate, exportstatus
    from vault.exportstate import ExportState
    from vault.home import Home
    from vault.quickcli import verdict

    h = Home(resolve_home(home)).require()
    cfg = exportconfig.load(h.path)
    # A missing state is reported, not created: an empty one would hide the loss.
    db = h.path / "state" / exportstate.FILE_NAME
    with ExportState(db if db.exists() else Path(":memory:")) as state:
        report = exportstatus.gather(h.path, cfg, state)
    verdict(report["exit_code"])
    if prometheus is not None:
        exportstatus.write_prometheus(report, prometheus)
    with status_output(report["exit_code"]):
        if as_json:
            emit_json(report)
        else:
            print("\n".join(exportstatus.render(report)))


@app.command("resolve")
def resolve(
    bundle_file: Annotated[str, typer.Argument(help="The bundle's file name (or a path to it)")],
    home: HomeOpt = None,
    vault: Annotated[Optional[str], typer.Option(
        "--vault", help="Only the report of this vault (fingerprint)")] = None,
    note: Annotated[Optional[str], typer.Option(
        "--note", help="What was done about it, kept in the state")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Settle a quarantine report by hand once it has been dealt with, with --note.

    Given an audit finding's id (``audit-…``, or ``audit`` for all), dismiss
    that finding once a person checked it. The note is what the state keeps
    of why a CRITICAL alert went away: it is required for both."""
    from vault import auditwatch, exporter
    from vault.errors import UsageError

    if auditwatch.is_audit_finding(bundle_file):
        _resolve_audit(resolve_home(home), bundle_file, vault, note, as_json)
        return
    if not (note or "").strip():
        raise UsageError("a quarantine report is settled with --note saying what was done "
                         "about it (kept in the state)")
    out = exporter.resolve(resolve_home(home), bundle_file, vault=vault, note=note)
    if as_json:
        emit_json(out)
    for r in out["resolved"]:
        say(f"resolved: {r['kind']} report of {r['file']} by vault {r['vault']} "
            f"({r['at']}): {r['reason'] or 'no reason given'}")


def _resolve_audit(home: Path, which: str, vault: str | None, note: str | None,
                   as_json: bool) -> None:
    """``export resolve audit-…``: dismiss audit findings, under the state lock."""
    from vault import auditwatch, exportstate
    from vault.errors import UsageError
    from vault.exportstate import ExportState
    from vault.home import Home

    text = (note or "").strip()
    if not text:
        raise UsageError("an audit finding is dismissed with --note saying what was checked "
                         "(and with whom)")
    h = Home(home).require()
    if not (h.path / "state" / exportstate.FILE_NAME).is_file():
        raise UsageError(f"no export state in {h.path / 'state'}: no audit finding to resolve")
    with exportstate.locked(h.path), ExportState.open(h.path) as state:
        done = auditwatch.resolve_audit(state, which, vault=vault, note=text)
    if as_json:
        emit_json({"audit_resolved": done})
    for f in done:
        say(f"resolved: audit finding {f['id']} ({f['kind']}) of vault {f['vault']}: {text}")


@app.command("reseal")
def reseal(
    source: Annotated[str, typer.Argument(help="A source name from config.toml")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give up on bundles lost before any vault had them; the next run seals their
    conversations again (those still in the export files)."""
    from vault import exporter

    out = exporter.reseal(resolve_home(home), source)
    if as_json:
        emit_json(out)
    else:
        say(f"{source}: gave up on {', '.join(out['abandoned'])}; "
            f"{out['conversations_to_seal_again']} conversation(s) are sealed again by the "
            "next 'chatvault export run' (those still in the export files). The vault will "
            f"report a gap at #{', #'.join(str(q) for q in out['sequences'])}.")


@app.command("check-config")
def check_config(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Validate config.toml: keys, recipients' key files, sources, limits (names key and line)."""
    from vault import exportconfig
    from vault.home import Home

    h = Home(resolve_home(home)).require()
    cfg, errors, notes = exportconfig.check(h.path)
    if cfg is not None:
        trusted = {e.fingerprint for e in h.trust().with_role("vault")}
        for r in cfg.recipients:
            if r.fingerprint not in trusted:
                notes.append(exportconfig.Note(str(r.path), f"{r.fingerprint} is not trusted "
                             "with role vault: its receipts will be refused (chatvault keys "
                             f"trust {r.path} --role vault)"))
    if as_json:
        emit_json({"ok": not errors, "config": str(h.config),
                   "errors": [e.as_dict() for e in errors],
                   "notes": [{"where": n.where, "note": n.text} for n in notes],
                   "recipients": [r.fingerprint for r in cfg.recipients] if cfg else [],
                   "sources": [s.name for s in cfg.sources] if cfg else []})
    else:
        for e in errors:
            say(f"error: {e}")
        for n in notes:
            say(f"note: {n}")
        if cfg is not None:
            say(f"{h.config}: OK ({len(cfg.recipients)} recipient(s), "
                f"{len(cfg.sources)} source(s))")
    if errors:
        raise typer.Exit(errors[0].exit_code)
