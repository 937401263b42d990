"""Sealing one source: its new and changed conversations into chained bundles.

Which conversations are sealed. Each source is read twice. The first pass
hashes every conversation's canonical form and keeps, per conversation id,
its *last* occurrence in reading order (files in sorted order): that is its
current version, so an export made of daily files that repeat a growing
conversation is handled without sealing old versions again and again. The
current version is sealed when its hash differs from the one sealed last time.
The second pass reads again only the files holding something to seal. So two
conversations of one id in a source are one conversation, the later one, as
the vault would keep it anyway (a bundle never carries an id twice: the
vault refuses such a bundle). Every conversation names the configured
source (the reading layer sets it, keeping a different name the export
carried in ``extra.source_in_export``); one that does not is reported and
left out, as the bundle's header files it.

Bundle size. A bundle file must not exceed ``max_bundle_bytes``. It is
closed before a record would take its *plaintext* past :func:`plaintext_budget`,
which reserves the fixed parts (prefix, meta, recipients, stream header,
signature) and the worst case of the variable ones: zstd never grows data
by more than 1/256 plus a small constant, and each encrypted chunk adds 17
bytes. A single conversation larger than the budget is reported and left
unsealed (raise ``max_bundle_bytes``), never sealed oversize.

Each bundle is sealed into the local outbox (atomic and durable) and then
recorded in the state in one transaction with its sequence and the hashes of
the conversations it carries (:meth:`ExportState.record_bundle`): the step a
crash cannot split. A failing source is reported in its :class:`SourceReport`
and does not stop the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vault import bundle, bundleids, canonical, records, sources
from vault.bundle import layout
from vault.errors import (ChatvaultError, EXIT_OTHER, EXIT_REJECTED, UnreadableExport,
                          most_severe)
from vault.exportconfig import ExporterConfig, Source
from vault.exportmedia import Fault, NoProgress, Progress, no_fault
from vault.exportstate import BundleRow, ExportState
from vault.keys import Identity

log = logging.getLogger(__name__)

_META_ALLOWANCE = 4096  # the meta JSON: a few hundred bytes in practice
_ZSTD_SLACK = 4096  # frame header, end frame, last block
_AEAD_OVERHEAD = 17  # per chunk: secretstream tag and MAC
_STREAM_HEADER = 24
_SIGNATURE = 64
_RECORD_FRAME = 5  # "R" and a u32 length

def plaintext_budget(max_bundle_bytes: int, recipients: int,
                     chunk: int = layout.DEFAULT_CHUNK) -> int:
    """The most plaintext a bundle may hold and still fit ``max_bundle_bytes``."""
    fixed = (layout.PREFIX_BYTES + _META_ALLOWANCE + recipients * layout.RECIPIENT_BYTES
             + _STREAM_HEADER + _SIGNATURE + _AEAD_OVERHEAD)
    # compressed c, file = fixed + c + 17 * ceil(c / chunk) <= max
    compressed = (max_bundle_bytes - fixed) * chunk // (chunk + _AEAD_OVERHEAD)
    # c <= p + p / 256 + slack
    return max(0, (compressed - _ZSTD_SLACK) * 256 // 257)


@dataclass
class SourceReport:
    name: str
    exit_code: int = 0
    errors: list[str] = field(default_factory=list)
    problems: int = 0
    problems_not_listed: int = 0  # past the 20 kept in errors (the log has them at DEBUG)
    seen: int = 0
    conversations: int = 0
    messages: int = 0
    bytes_in: int = 0
    bytes_sealed: int = 0
    bundles: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, exc: ChatvaultError | Exception, where: str | None = None) -> None:
        if isinstance(exc, ChatvaultError):
            code, text = exc.exit_code, str(exc)
        else:
            code, text = EXIT_OTHER, f"internal error: {type(exc).__name__}: {exc}"
            log.exception("source %s: %s", self.name, text)
        self.exit_code = most_severe([self.exit_code, code])
        self.errors.append(f"{where}: {text}" if where else text)

    def problem(self, text: str) -> None:
        self.problems += 1
        self.exit_code = most_severe([self.exit_code, EXIT_REJECTED])
        if len(self.errors) < 20:
            self.errors.append(text)
        else:
            self.problems_not_listed += 1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "exit_code": self.exit_code, "errors": self.errors,
                "problems": self.problems,
                "problems_not_listed": self.problems_not_listed, "conversations_read": self.seen,
                "conversations": self.conversations, "messages": self.messages,
                "bytes_in": self.bytes_in, "bytes_sealed": self.bytes_sealed,
                "bundles": self.bundles}


@dataclass
class Context:
    """What sealing a source needs; one per run."""

    cfg: ExporterConfig
    state: ExportState
    identity: Identity
    outbox: Path
    fault: Fault = no_fault
    progress: Progress = field(default_factory=NoProgress)


class _Sealer:
    """Fills bundles for one source, closing each one at the size budget."""

    def __init__(self, ctx: Context, src: Source, report: SourceReport) -> None:
        self.ctx, self.src, self.report = ctx, src, report
        self.budget = plaintext_budget(ctx.cfg.max_bundle_bytes, len(ctx.cfg.recipients))
        self.writer: bundle.BundleWriter | None = None
        self.prev: str | None = None
        self.ids = bundleids.SeenIds()
        #: conversations and messages in the open bundle: counted as sealed once it is
        self.pending = (0, 0)

    def add(self, cid: str, data: bytes, summary: records.Summary, digest: str) -> None:
        size = len(data) + _RECORD_FRAME
        if size > self.budget:
            self.report.problem(f"a conversation of {len(data)} bytes does not fit in a "
                                f"bundle of max_bundle_bytes {self.ctx.cfg.max_bundle_bytes}; "
                                "raise it to export this conversation")
            return
        if self.writer is not None and self.writer.plaintext_size + size > self.budget:
            self.close()
        if self.writer is None:
            self._open()
        assert self.writer is not None
        if self.ids.first(cid, 0) is not None:
            # only when a file changed between the two passes: the next run seals it
            self.report.problem(f"conversation {cid[:80]!r} was read twice (its export "
                                "changed while being read); sealed once")
            return
        self.writer.add_record(data, summary)
        self.ctx.state.hold(cid, digest)
        self.pending = (self.pending[0] + 1, self.pending[1] + summary.messages)

    def _open(self) -> None:
        state, cfg = self.ctx.state, self.ctx.cfg
        last, self.prev = state.chain(self.src.name)
        path = self.ctx.outbox / bundle.file_name(self.src.name, last + 1)
        self.ids = bundleids.SeenIds()
        self.writer = bundle.BundleWriter(
            path, self.ctx.identity, [r.public for r in cfg.recipients], kind="export",
            source=self.src.name, sequence=last + 1, prev_hash=self.prev,
            context=self.src.context(), level=cfg.zstd_level, threads=cfg.writer_threads)

    def close(self) -> None:
        """Finish the open bundle and record it (the step the crash rule hinges on)."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        pending, self.pending = self.pending, (0, 0)
        sealed = writer.finish()
        try:
            self.ctx.fault("sealed")
            meta = sealed.meta
            row = BundleRow(self.src.name, meta["sequence"], sealed.path.name, sealed.sha256,
                            sealed.size, writer.plaintext_size, meta["counts"]["conversations"],
                            meta["counts"]["messages"], tuple(meta["recipients"]),
                            meta["created_at"])
            self.ctx.state.record_bundle(row, self.prev, self.ctx.fault)
        except Exception:
            sealed.path.unlink(missing_ok=True)
            self.ctx.state.drop_held()
            raise
        self.ctx.fault("recorded")
        log.info("sealed %s: %d conversations, %d messages, %d bytes", row.file_name,
                 row.conversations, row.messages, row.size)
        self.report.bytes_sealed += row.size
        self.report.bundles.append(row.describe())
        self.report.conversations += pending[0]
        self.report.messages += pending[1]

    def abort(self) -> None:
        self.pending = (0, 0)
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.ctx.state.drop_held()


def _read(item: Path, src: Source, options: sources.ReadOptions,
          report: SourceReport) -> Iterator[dict[str, Any]]:
    """The conversations of one export file; a failing file is reported and ends early."""
    convs = sources.read(item, src.format, options)
    while True:
        try:
            conv = next(convs)
        except StopIteration:
            return
        except ChatvaultError as exc:
            report.fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a reader bug must not stop other sources
            report.fail(exc, str(item))
            return
        yield conv


def _canonical(conv: dict[str, Any], where: str,
               report: SourceReport) -> tuple[bytes, records.Summary] | None:
    try:
        return records.canonical_record(conv, where)
    except ChatvaultError as exc:
        report.problem(str(exc))
        return None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _options(src: Source, quiet: bool = False) -> sources.ReadOptions:
    return sources.ReadOptions(source=src.name, timezone=src.timezone,
                               phone_region=src.phone_region, quiet=quiet)


def _changed(state: ExportState, src: Source,
             files: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Second pass: the occurrences the scan chose, re-read in order, in flat memory."""
    wanted = state.scan_changed(src.name)
    nxt = next(wanted, None)
    while nxt is not None:
        index = nxt[0]
        # errors were reported by the first pass; a file that changed since is
        # caught up with by the next run
        for pos, conv in enumerate(_read(files[index], src, _options(src, quiet=True),
                                         SourceReport(src.name))):
            if nxt is None or nxt[0] != index:
                break
            if pos == nxt[1]:
                nxt = next(wanted, None)
                yield files[index], conv
        while nxt is not None and nxt[0] == index:
            nxt = next(wanted, None)


def export_source(ctx: Context, src: Source) -> SourceReport:
    """Seal what is new or changed in one source; failures end up in the report."""
    report = SourceReport(src.name)
    options = _options(src)
    try:
        # files of a folder left unread are reported through options, with the rest
        files = sources.export_files(src.path, src.format, options)
        report.bytes_in = sum(_size(f) for f in files)
    except (ChatvaultError, OSError) as exc:
        for p in options.problems:
            report.problem(str(p))
        report.fail(exc if isinstance(exc, ChatvaultError) else
                    UnreadableExport(f"cannot read ({exc.strerror})", path=src.path))
        return report

    state = ctx.state
    state.scan_reset()
    ctx.progress.begin(f"reading {src.name}", report.bytes_in)
    for index, item in enumerate(files):
        for pos, conv in enumerate(_read(item, src, options, report)):
            # sources.read validated it: the first pass only needs the hash
            try:
                data = canonical.dumps(conv)
            except canonical.CanonicalError as exc:
                report.problem(f"{item}: conversation {pos + 1}: cannot be written "
                               f"canonically ({exc})")
                continue
            named = conv.get("source")
            if named != src.name:
                report.problem(f"{item}: conversation {pos + 1}: field 'source': "
                               f"{str(named)[:80]!r}, but this source is {src.name!r}: "
                               "left out")
                continue
            state.scan_note(conv["conversation_id"], records.content_hash(data), index, pos)
        ctx.progress.advance(_size(item))
    ctx.progress.end()
    for p in options.problems:
        report.problem(str(p))
    report.seen = state.scan_count()

    sealer = _Sealer(ctx, src, report)
    ctx.progress.begin(f"sealing {src.name}", None)
    try:
        for item, conv in _changed(state, src, files):
            found = _canonical(conv, str(item), report)
            if found is not None and found[1].source == src.name:
                digest = records.content_hash(found[0])
                cid = conv["conversation_id"]
                # the file may have changed since the first pass: compare again
                if state.exported_hash(src.name, cid) != digest:
                    sealer.add(cid, found[0], found[1], digest)
            ctx.progress.advance(1)
        sealer.close()
    except Exception as exc:  # noqa: BLE001 - reported; the other sources go on
        sealer.abort()
        report.fail(exc)
    finally:
        ctx.progress.end()
    return report
