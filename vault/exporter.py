"""The online exporter: new conversations, sealed and chained, onto removable media.

``export run`` does, in this order, holding the state lock throughout:

1. **recover** from an interrupted run (:func:`recover`);
2. **receipts** on the media are judged (:mod:`vault.acks`); bundles every
   vault acknowledged are deleted locally and from the stick;
3. **seal**, source by source (:mod:`vault.exportseal`): only new or changed
   conversations, each bundle chained to the previous one of its source by
   sequence number and hash; a failing source does not stop the others;
4. **deliver** every bundle the media lacks (:mod:`vault.exportmedia`).

It ends with the most severe exit code seen (:func:`vault.errors.most_severe`):
3 for an unreadable export, 5 for full, read-only or missing media, ...

The crash rule. Bundles are sealed into ``H/outbox/`` (atomic, durable),
then recorded with their sequence and the conversations they carry in one
state transaction, and only then copied to the media; the state says
"written" only after the media copy was read back and checked. So a run
killed at any point leaves either a complete recorded bundle or nothing that
counts, and the next run finishes the job:

=================================  ==========================================
killed ...                         the next run ...
=================================  ==========================================
while sealing                      removes the temporaries in ``H/outbox/``
sealed, not recorded               deletes the unrecorded file; the same
                                   conversations are sealed again under the
                                   same sequence (it never left the machine)
recorded, not on the media         writes it to the media
while writing to the media         removes the temporary on the media (ours
                                   only), writes the bundle again
on the media, state not updated    finds it, checks its hash, marks it written
acknowledged, local copy kept      deletes the local copy
=================================  ==========================================

``export rewrite`` writes every unacknowledged bundle again (a lost or
broken stick); ``export receipts`` only judges receipts.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vault import acks, atomic, exportconfig, exportmedia, exportstate
from vault.errors import ChatvaultError, most_severe
from vault.exportconfig import ExporterConfig
from vault.exportmedia import Fault, MediaReport, NoProgress, Progress, no_fault
from vault.exportseal import Context, SourceReport, export_source
from vault.exportstate import ExportState
from vault.home import Home

log = logging.getLogger(__name__)

#: tests replace this to stop a run at a named step (tests/test_export_crash.py)
fault_hook: Fault = no_fault


@dataclass
class RunReport:
    command: str
    media_path: str
    recovered: list[str] = field(default_factory=list)
    sources: list[SourceReport] = field(default_factory=list)
    receipts: acks.ReceiptReport | None = None
    media: MediaReport | None = None

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.sources]
        codes += [self.receipts.exit_code] if self.receipts else []
        codes += [self.media.exit_code] if self.media else []
        return most_severe(codes)

    def totals(self) -> dict[str, int]:
        keys = ("conversations", "messages", "bytes_in", "bytes_sealed")
        out = {k: sum(getattr(s, k) for s in self.sources) for k in keys}
        out["bundles"] = sum(len(s.bundles) for s in self.sources)
        out["written_to_media"] = len(self.media.written) if self.media else 0
        return out

    def describe(self) -> dict[str, Any]:
        return {"command": self.command, "exit_code": self.exit_code,
                "totals": self.totals(), "recovered": self.recovered,
                "sources": [s.describe() for s in self.sources],
                "receipts": self.receipts.describe() if self.receipts else None,
                "media": self.media.describe() if self.media else None}


def recover(state: ExportState, outbox: Path) -> list[str]:
    """Undo what an interrupted run left half-done in the local outbox."""
    notes = []
    removed = atomic.remove_stale_temporaries(outbox)
    if removed:
        notes.append(f"removed {removed} temporary file(s) of an interrupted run")
    for path in sorted(outbox.glob("*.cvb")):
        if path.is_symlink() or not path.is_file():
            continue
        row = state.bundle_by_name(path.name)
        if row is None:
            path.unlink()
            notes.append(f"{path.name} was sealed by an interrupted run but never "
                         "recorded: removed; its conversations are sealed again")
        elif row.acknowledged_at:
            path.unlink()
            state.mark_local_deleted(row.sha256)
            notes.append(f"{path.name} was already acknowledged: local copy removed")
    for note in notes:
        log.warning("recovery: %s", note)
    return notes


@contextmanager
def _session(home_path: Path, command: str, report: RunReport
             ) -> Iterator[tuple[Home, ExporterConfig, ExportState]]:
    """Lock, open the state, record the run (also when it fails)."""
    home = Home(Path(home_path)).require()
    cfg = exportconfig.load(home.path)
    with exportstate.locked(home.path), ExportState.open(home.path) as state:
        run_id = state.start_run(command)
        home.sub("outbox").mkdir(mode=0o700, exist_ok=True)
        try:
            report.recovered = recover(state, home.sub("outbox"))
            yield home, cfg, state
        except ChatvaultError as exc:
            state.finish_run(run_id, exc.exit_code, {"error": exc.as_dict()})
            raise
        for src in report.sources:
            state.record_source_run(run_id, src.name, src.exit_code,
                                    src.errors[0] if src.errors else None,
                                    src.conversations, src.messages, len(src.bundles))
        state.finish_run(run_id, report.exit_code, report.totals())
    log.info("export %s finished with exit code %d: %s", command, report.exit_code,
             report.totals())


def _media_path(cfg: ExporterConfig, media: Path | None) -> Path:
    return Path(media) if media is not None else cfg.media


def run(home_path: Path, *, media: Path | None = None, passphrase_file: Path | None = None,
        progress: Progress | None = None, fault: Fault | None = None) -> RunReport:
    """One export run (see the module docstring); returns what happened."""
    fault = fault or fault_hook
    progress = progress or NoProgress()
    report = RunReport("run", "")
    with _session(home_path, "run", report) as (home, cfg, state):
        media_path = _media_path(cfg, media)
        report.media_path = str(media_path)
        identity = home.identity(passphrase_file)
        outbox = home.sub("outbox")
        if media_path.is_dir():
            report.receipts = acks.collect(state, cfg, home.trust(), media_path, outbox)
        else:
            acks.settle(state, cfg, outbox)
        ctx = Context(cfg, state, identity, outbox, fault, progress)
        for src in cfg.sources:
            report.sources.append(export_source(ctx, src))
        names = [s.name for s in cfg.sources]
        report.media = exportmedia.deliver(state, outbox, media_path, names, fault=fault,
                                           progress=progress)
    return report


def rewrite(home_path: Path, *, media: Path | None = None, progress: Progress | None = None,
            fault: Fault | None = None) -> RunReport:
    """Write every unacknowledged bundle to the media again, checked."""
    report = RunReport("rewrite", "")
    with _session(home_path, "rewrite", report) as (home, cfg, state):
        media_path = _media_path(cfg, media)
        report.media_path = str(media_path)
        report.media = exportmedia.deliver(
            state, home.sub("outbox"), media_path, [s.name for s in cfg.sources], force=True,
            fault=fault or fault_hook, progress=progress or NoProgress())
    return report


def receipts(home_path: Path, *, media: Path | None = None) -> RunReport:
    """Judge the receipts on the media; let go of what every vault acknowledged."""
    report = RunReport("receipts", "")
    with _session(home_path, "receipts", report) as (home, cfg, state):
        media_path = _media_path(cfg, media)
        report.media_path = str(media_path)
        report.receipts = acks.collect(state, cfg, home.trust(), media_path,
                                       home.sub("outbox"))
    return report
