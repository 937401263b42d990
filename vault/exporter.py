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
broken stick); ``export receipts`` only judges receipts; ``export reseal``
gives up on bundles whose local copy is lost before any vault acknowledged
them and seals their conversations again; ``export resolve`` settles a
quarantine report by hand.

The lost-state rule and the recovery of an interrupted run are in
:mod:`vault.exportrecovery`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vault import acks, exportconfig, exportmedia, exportstate, media
from vault.errors import ChatvaultError, MediaMissing, UsageError, most_severe
from vault.exportconfig import ExporterConfig
from vault.exportrecovery import check_state, read_register, recover, write_register
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
        out["receipts_refused"] = len(self._refused())
        return out

    def _refused(self) -> list[acks.Outcome]:
        return [o for o in self.receipts.outcomes if o.result == "refused"] \
            if self.receipts else []

    def summary(self) -> dict[str, Any]:
        """What the state keeps of the run: the totals, and the first receipt refused."""
        out: dict[str, Any] = dict(self.totals())
        refused = self._refused()
        if refused:
            out["first_receipt_refused"] = f"{refused[0].file}: {refused[0].reason}"
        return out

    def describe(self) -> dict[str, Any]:
        # 'media' names the stick even when nothing was written to it ('receipts')
        written = self.media.describe() if self.media else {"path": self.media_path or None,
                                                            "written": []}
        return {"command": self.command, "exit_code": self.exit_code,
                "totals": self.totals(), "recovered": self.recovered,
                "media_path": self.media_path or None,
                "sources": [s.describe() for s in self.sources],
                "receipts": self.receipts.describe() if self.receipts else None,
                "media": written}


@contextmanager
def _session(home_path: Path, command: str, report: RunReport, media: Path | None = None,
             *, with_media: bool = False) -> Iterator[tuple[Home, ExporterConfig, ExportState]]:
    """Lock, check and open the state, record the run (also when it fails)."""
    home = Home(Path(home_path)).require()
    cfg = exportconfig.load(home.path)
    media_path = _media_path(cfg, media) if with_media else None
    report.media_path = str(media_path) if media_path is not None else ""
    with exportstate.locked(home.path):
        if not (home.path / "state" / exportstate.FILE_NAME).exists():
            _refuse(check_state(home.path, cfg, None, media_path))
        with ExportState.open(home.path) as state:
            _refuse(check_state(home.path, cfg, state, media_path))
            write_register(home.path, state)
            run_id = state.start_run(command)
            home.sub("outbox").mkdir(mode=0o700, exist_ok=True)
            try:
                report.recovered = recover(state, home.sub("outbox"), _heads(home.path))
                yield home, cfg, state
            except ChatvaultError as exc:
                state.finish_run(run_id, exc.exit_code, {"error": exc.as_dict()})
                raise
            finally:
                write_register(home.path, state)
            for src in report.sources:
                state.record_source_run(run_id, src.name, src.exit_code,
                                        src.errors[0] if src.errors else None,
                                        src.conversations, src.messages, len(src.bundles))
            state.finish_run(run_id, report.exit_code, report.summary())
    log.info("export %s finished with exit code %d: %s", command, report.exit_code,
             report.totals())


def _heads(home: Path) -> dict[str, tuple[int, str | None]] | None:
    try:
        return read_register(home)
    except ValueError:
        return None  # rewritten from the state just before; only a failed write leaves it


def _refuse(problem: ChatvaultError | None) -> None:
    # not logged as well: the command prints it once, on stderr (the journal under systemd)
    if problem is not None:
        raise problem


def _media_path(cfg: ExporterConfig, media: Path | None) -> Path:
    return Path(media) if media is not None else cfg.media


def _no_stick(cfg: ExporterConfig, home: Home, media_path: Path) -> MediaMissing | None:
    """The media folder is the empty mount point of no stick (see media.not_a_stick)."""
    if not cfg.mounted_only:
        return None
    why = media.not_a_stick(media_path, home.path)
    return MediaMissing(why, path=media_path) if why else None


def run(home_path: Path, *, media: Path | None = None, passphrase_file: Path | None = None,
        progress: Progress | None = None, fault: Fault | None = None) -> RunReport:
    """One export run (see the module docstring); returns what happened."""
    fault = fault or fault_hook
    progress = progress or NoProgress()
    report = RunReport("run", "")
    with _session(home_path, "run", report, media, with_media=True) as (home, cfg, state):
        media_path = Path(report.media_path)
        identity = home.identity(passphrase_file)
        outbox = home.sub("outbox")
        no_stick = _no_stick(cfg, home, media_path)
        if media_path.is_dir() and no_stick is None:
            report.receipts = acks.collect(state, cfg, home.trust(), media_path, outbox)
        else:
            acks.settle(state, cfg, outbox)
        ctx = Context(cfg, state, identity, outbox, fault, progress)
        for src in cfg.sources:
            report.sources.append(export_source(ctx, src))
        write_register(home.path, state)  # before any new bundle can reach a stick
        names = [s.name for s in cfg.sources]
        report.media = exportmedia.deliver(state, outbox, media_path, names, fault=fault,
                                           progress=progress, no_stick=no_stick)
    return report


def rewrite(home_path: Path, *, media: Path | None = None, progress: Progress | None = None,
            fault: Fault | None = None) -> RunReport:
    """Write every unacknowledged bundle to the media again, checked."""
    report = RunReport("rewrite", "")
    with _session(home_path, "rewrite", report, media, with_media=True) as (home, cfg, state):
        media_path = Path(report.media_path)
        report.media = exportmedia.deliver(
            state, home.sub("outbox"), media_path, [s.name for s in cfg.sources],
            force=True, fault=fault or fault_hook, progress=progress or NoProgress(),
            no_stick=_no_stick(cfg, home, media_path))
    return report


def receipts(home_path: Path, *, media: Path | None = None) -> RunReport:
    """Judge the receipts on the media; let go of what every vault acknowledged."""
    report = RunReport("receipts", "")
    with _session(home_path, "receipts", report, media, with_media=True) as (home, cfg, state):
        _refuse(_no_stick(cfg, home, Path(report.media_path)))
        report.receipts = acks.collect(state, cfg, home.trust(), Path(report.media_path),
                                       home.sub("outbox"))
    return report


def reseal(home_path: Path, source: str) -> dict[str, Any]:
    """Give up on the lost bundles of ``source``; the next run seals their conversations again.

    Lost: not acknowledged by every vault, and no local copy left to write
    to a stick. The vault will report a gap at their sequence numbers; if a
    stick carrying one turns up after all, the vault still ingests it.
    """
    report = RunReport("reseal", "")
    with _session(home_path, "reseal", report) as (home, cfg, state):
        if cfg.source(source) is None:
            raise UsageError(f"{source!r} is not a [[sources]] name in {cfg.path}; its "
                             "conversations could not be sealed again")
        lost = [r for r in state.bundles(unacknowledged=True, source=source)
                if not r.abandoned_at and not (home.sub("outbox") / r.file_name).is_file()]
        if not lost:
            raise UsageError(f"no lost bundle of {source}: each one not yet acknowledged still "
                             "has its local copy ('chatvault export rewrite' writes them to a "
                             "stick again)")
        forgotten = 0
        for row in lost:
            forgotten += state.abandon(row)
            for r in acks.reports(state):
                if r.bundle.sha256 == row.sha256 and r.resolution is None:
                    state.resolve(row.sha256, r.vault, r.receipt_at, "resealed", None)
            log.warning("gave up on %s (local copy lost, not acknowledged); its "
                        "conversations are sealed again by the next run", row.file_name)
    return {"source": source, "abandoned": [r.file_name for r in lost],
            "sequences": [r.sequence for r in lost], "conversations_to_seal_again": forgotten}


def resolve(home_path: Path, bundle_file: str, *, vault: str | None = None,
            note: str | None = None) -> dict[str, Any]:
    """Settle the open quarantine reports of one bundle by hand (recorded in the state)."""
    name = Path(bundle_file).name
    report = RunReport("resolve", "")
    with _session(home_path, "resolve", report) as (home, cfg, state):
        row = state.bundle_by_name(name)
        if row is None:
            raise UsageError(f"{name}: this exporter never sealed a bundle of that name")
        todo = [r for r in acks.reports(state) if r.bundle.sha256 == row.sha256 and r.is_open
                and vault in (None, r.vault)]
        if not todo:
            raise UsageError(f"{name}: no open quarantine report"
                             f"{f' from vault {vault}' if vault else ''}; nothing to resolve "
                             "('chatvault export status' lists them)")
        for r in todo:
            state.resolve(row.sha256, r.vault, r.receipt_at, "by hand", note)
            log.info("quarantine report of %s by vault %s resolved by hand", name, r.vault)
        keys = {(r.vault, r.receipt_at, r.kind) for r in todo}
        done = [r.describe() for r in acks.reports(state)
                if r.bundle.sha256 == row.sha256 and (r.vault, r.receipt_at, r.kind) in keys]
    return {"bundle": name, "resolved": done}
