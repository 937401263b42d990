"""Receipts brought back on media: verify, acknowledge, and let go of what is safe.

A receipt (:mod:`vault.receipts`) is accepted when all of this holds:

1. its signature verifies and its signer is trusted with role ``vault`` in the
   exporter's trust store (``chatvault keys trust vault.pub --role vault``);
2. the signer is one of the ``[[recipients]]`` in the config;
3. its ``bundle_sha256`` names a bundle this exporter sealed, and that bundle
   was sealed to the signer.

Anything else is refused and reported, never fatal: a forged or damaged
receipt (exit 3), an untrusted, revoked or non-recipient signer (exit 4), a
receipt for a bundle we never wrote (exit 3). Receipts that name a source this
exporter has never had are another exporter's (sticks may be shared) and are
left alone without being judged.

Status ``ingested`` or ``duplicate`` acknowledges the bundle for that vault;
``quarantined`` is recorded as a quarantine report (a CRITICAL alert in
``export status``) until a later receipt from the same vault says otherwise,
a person settles it (``export resolve``) or its conversations are sealed
again (``export reseal``). A receipt may name a *damaged copy* of one of our
bundles (same file name, another hash): the vault read bytes a stick
changed. Then:

* if that vault already acknowledged the bundle, the damaged copy is a
  **stray** (a leftover on another stick): nothing is lost, the vault's
  acknowledgement stands, and the report is kept apart (a WARNING at most,
  and only while the damaged copy may still be around);
* either way, a file on the stick under that bundle's name whose hash is the
  damaged one is deleted, so the next run writes a good copy in its place
  (when we still have one) and no vault reads the damaged bytes again.

A bundle is safe once every vault it must reach acknowledged it. That set is
the bundle's recipients that are still ``[[recipients]]`` in the config (a
decommissioned site stops holding bundles back; a site added later could not
open older bundles anyway), or all of its recipients if none are left. Then
the local copy is deleted, and the bundle and its receipts are removed from
the stick.

Every accepted receipt that states the vault's audit position is kept for
:mod:`vault.auditwatch`, which judges them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault import auditwatch, exportmedia, media, receipts, signed
from vault.errors import ChatvaultError, EXIT_REJECTED, InputRejected, PolicyRefused
from vault.exportconfig import ExporterConfig
from vault.exportstate import BundleRow, ExportState

log = logging.getLogger(__name__)

ACKNOWLEDGING = ("ingested", "duplicate")

#: tests replace this to stop a run at a named receipt step (tests/test_export_crash.py),
#: as :data:`vault.exporter.fault_hook` does for sealing and writing. Steps:
#: ack-recording / ack-recorded (around each receipt's state commit in :func:`judge`),
#: settle-acknowledged, settle-unlinked, settle-recorded (after each of the three
#: writes of :func:`settle`), tidy-removed (after each file :func:`tidy_media`
#: removes from the stick).
fault_hook: exportmedia.Fault = exportmedia.no_fault


class UnknownBundle(InputRejected):
    code = "unknown_bundle"


class NotARecipientVault(PolicyRefused):
    code = "not_a_recipient_vault"


@dataclass
class Outcome:
    """What became of one receipt file."""

    file: str
    result: str  # acknowledged | quarantined | stray | already | refused | ignored
    bundle: str | None = None
    vault: str | None = None
    status: str | None = None
    reason: str | None = None
    error: str | None = None
    exit_code: int = 0

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ReceiptReport:
    outcomes: list[Outcome] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    removed_from_media: list[str] = field(default_factory=list)
    damaged_removed: list[str] = field(default_factory=list)
    audit_findings: list[dict[str, Any]] = field(default_factory=list)
    error: ChatvaultError | None = None

    @property
    def exit_code(self) -> int:
        from vault.errors import most_severe

        codes = [o.exit_code for o in self.outcomes]
        return most_severe(codes + ([self.error.exit_code] if self.error else []))

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    def describe(self) -> dict[str, Any]:
        return {"receipts": [o.describe() for o in self.outcomes],
                "completed": self.completed, "removed_from_media": self.removed_from_media,
                "damaged_removed": self.damaged_removed, "audit_findings": self.audit_findings,
                "error": self.error.as_dict() if self.error else None}


@dataclass(frozen=True)
class Report:
    """One quarantine report about one of our bundles, and whether it is still open.

    ``kind`` is ``quarantine`` (the vault does not hold the bundle) or
    ``stray`` (it does; a damaged leftover copy was refused). A quarantine
    report closes when the bundle is acknowledged after all, resealed or
    resolved by hand; a stray one when the damaged copy was removed from a
    stick or resolved by hand.
    """

    kind: str
    bundle: BundleRow
    vault: str
    reason: str | None
    copy_sha256: str | None
    receipt_at: str
    removed_at: str | None = None
    resolution: dict[str, Any] | None = None

    @property
    def damaged_copy(self) -> bool:
        return self.copy_sha256 is not None and self.copy_sha256 != self.bundle.sha256

    @property
    def is_open(self) -> bool:
        if self.resolution is not None or self.bundle.abandoned_at:
            return False
        if self.kind == "stray":
            return self.damaged_copy and self.removed_at is None
        return not self.bundle.acknowledged_at

    def describe(self) -> dict[str, Any]:
        return {"file": self.bundle.file_name, "source": self.bundle.source,
                "kind": self.kind, "vault": self.vault, "reason": self.reason,
                "at": self.receipt_at, "copy_sha256": self.copy_sha256,
                "removed_from_media_at": self.removed_at, "resolved": self.resolution,
                "open": self.is_open}


def reports(state: ExportState) -> list[Report]:
    """Every quarantine report this exporter has received, oldest bundle first."""
    out = []
    for a in state.acks():
        row = state.bundle_by_sha(a.sha256)
        if a.status != "quarantined" or row is None:
            continue
        # On a bundle every vault acknowledged, such a report is closed (before
        # strays were kept apart, a stray's report replaced an acknowledgement).
        out.append(Report("quarantine", row, a.vault, a.reason, a.copy_sha256, a.receipt_at,
                          resolution=state.resolution(a.sha256, a.vault, a.receipt_at)))
    for s in state.strays():
        row = state.bundle_by_sha(s.sha256)
        if row is not None:
            out.append(Report("stray", row, s.vault, s.reason, s.copy_sha256, s.receipt_at,
                              s.removed_at, state.resolution(s.sha256, s.vault, s.receipt_at)))
    return sorted(out, key=lambda r: (r.bundle.source, r.bundle.sequence, r.receipt_at))


def required_vaults(row: BundleRow, cfg: ExporterConfig) -> set[str]:
    """The vaults whose receipts make ``row`` safe to let go (see the module doc)."""
    sealed_to = set(row.recipients)
    return (sealed_to & cfg.recipient_fingerprints) or sealed_to


def _refused(path: Path, exc: ChatvaultError, **known: Any) -> Outcome:
    log.warning("receipt %s refused: %s", path.name, exc.detail)
    return Outcome(path.name, "refused", error=exc.code, reason=exc.detail,
                   exit_code=exc.exit_code, **known)


def _ours(path: Path, sources: set[str]) -> bool:
    """Whether a receipt names one of our sources (read before verifying: only routing)."""
    try:
        body = signed.load(path)["body"]
    except ChatvaultError:
        return True  # damaged: judge it (and refuse it) rather than ignore it
    name = body.get("bundle_file")
    if not isinstance(name, str):
        return True
    return any(name.startswith(f"{s}-") for s in sources)


def judge(path: Path, state: ExportState, cfg: ExporterConfig, trust: Any,
          sources: set[str]) -> Outcome:
    """Verify one receipt file and record what it says; never raises for bad input."""
    if not _ours(path, sources):
        return Outcome(path.name, "ignored", reason="names a source this exporter never had")
    try:
        receipt = receipts.verify_file(path, trust)
    except ChatvaultError as exc:
        return _refused(path, exc)
    except (ValueError, TypeError, KeyError) as exc:
        return _refused(path, InputRejected(f"malformed receipt ({type(exc).__name__})"))

    known = {"vault": receipt.vault, "status": receipt.status}
    if receipt.vault not in cfg.recipient_fingerprints:
        return _refused(path, NotARecipientVault(
            f"signed by vault {receipt.vault}, which is not one of the [[recipients]] in "
            "the config"), **known)
    row = state.bundle_by_sha(receipt.bundle_sha256)
    said = receipt.body.get("reason")
    reason = said if isinstance(said, str) else None
    copy = receipt.bundle_sha256
    if row is None:
        row = state.bundle_by_name(str(receipt.body["bundle_file"]))
        if row is None or receipt.status != "quarantined":
            what = "with another content than" if row else "this exporter never wrote:"
            return _refused(path, UnknownBundle(
                f"names a bundle {what} {receipt.body['bundle_file']} (sha256 "
                f"{copy[:16]}…)"), **known)
        # The vault read a damaged copy of one of ours: that is a quarantine of it.
        reason = (f"the copy the vault read is damaged (sha256 {copy[:16]}…, "
                  f"sealed {row.sha256[:16]}…): {said}")
    if receipt.vault not in row.recipients:
        return _refused(path, NotARecipientVault(f"vault {receipt.vault} was not a recipient "
                                                 f"of {row.file_name}"),
                        bundle=row.file_name, **known)

    auditwatch.keep_position(state, receipt, path)
    at = receipt.body.get("at")
    at = at if isinstance(at, str) else "1970-01-01T00:00:00Z"
    if receipt.status == "quarantined" and _holds(state, row, receipt.vault):
        return _stray(state, path, row, receipt.vault, copy, said, at, known)
    fault_hook("ack-recording")
    changed = state.record_ack(row.sha256, receipt.vault, receipt.status, reason, at,
                               copy if copy != row.sha256 else None)
    fault_hook("ack-recorded")
    if not changed:
        result = "already"
    elif receipt.status == "quarantined":
        result = "quarantined"
        log.error("vault %s quarantined %s: %s", receipt.vault, row.file_name, reason)
    else:
        result = "acknowledged"
        log.info("vault %s acknowledged %s (%s)", receipt.vault, row.file_name, receipt.status)
    code = EXIT_REJECTED if result == "quarantined" else 0
    return Outcome(path.name, result, bundle=row.file_name, reason=reason, exit_code=code,
                   **known)


def _holds(state: ExportState, row: BundleRow, vault: str) -> bool:
    """Whether ``vault`` has acknowledged ``row`` (so it holds the bundle)."""
    if row.acknowledged_at:
        return True
    return any(a.vault == vault and a.status in ACKNOWLEDGING for a in state.acks(row.sha256))


def _stray(state: ExportState, path: Path, row: BundleRow, vault: str, copy: str,
           said: Any, at: str, known: dict[str, Any]) -> Outcome:
    """A quarantine report from a vault that already holds the bundle: not a loss."""
    reason = (f"a damaged stray copy (sha256 {copy[:16]}…) of a bundle vault {vault} already "
              f"holds; nothing is lost: {said if isinstance(said, str) else 'no reason given'}")
    if not state.record_stray(row.sha256, vault, copy, reason, at):
        return Outcome(path.name, "already", bundle=row.file_name, reason=reason, **known)
    log.warning("vault %s quarantined a damaged stray copy of %s, which it already holds",
                vault, row.file_name)
    return Outcome(path.name, "stray", bundle=row.file_name, reason=reason, **known)


def settle(state: ExportState, cfg: ExporterConfig, outbox: Path) -> list[BundleRow]:
    """Mark bundles acknowledged by every vault they must reach; delete local copies."""
    done = []
    for row in state.bundles(unacknowledged=True):
        acked = {a.vault for a in state.acks(row.sha256) if a.status in ACKNOWLEDGING}
        if not required_vaults(row, cfg) <= acked:
            continue
        # In this order, so a crash between two steps leaves an acknowledged bundle
        # whose local copy recovery deletes (exportrecovery.recover), never a local
        # copy gone from a bundle the state still waits for.
        state.mark_acknowledged(row.sha256)
        fault_hook("settle-acknowledged")
        local = outbox / row.file_name
        local.unlink(missing_ok=True)
        fault_hook("settle-unlinked")
        state.mark_local_deleted(row.sha256)
        fault_hook("settle-recorded")
        log.info("%s acknowledged by every vault; local copy deleted", row.file_name)
        done.append(row)
    return done


def damaged_copies(state: ExportState) -> dict[str, set[str]]:
    """Per bundle file name, the hashes of damaged copies vaults told us about."""
    out: dict[str, set[str]] = {}
    reported = [(a.sha256, a.copy_sha256) for a in state.acks() if a.status == "quarantined"]
    reported += [(s.sha256, s.copy_sha256) for s in state.strays()]
    for sha, copy in reported:
        row = state.bundle_by_sha(sha)
        if row is not None and copy and copy != sha:
            out.setdefault(row.file_name, set()).add(copy)
    return out


def tidy_media(state: ExportState, media_path: Path, sources: set[str],
               report: ReceiptReport | None = None) -> list[str]:
    """Remove acknowledged bundles, known damaged copies and settled receipts from the stick."""
    doomed: list[Path] = []
    damaged: list[tuple[Path, str]] = []
    known_bad = damaged_copies(state)
    outbox = media.folder(media_path, media.OUTBOX)
    # quiet: what is odd in the stick's outbox is said by the command writing to it
    for path in media.safe_files(outbox, ".cvb", 2**63, quiet=True):
        row = state.bundle_by_name(path.name)
        if row is None:
            continue
        # Same name is not enough (a misconfigured exporter might share a source
        # name on this stick): only the very bundle that was acknowledged goes,
        # and only a copy with a hash a vault reported as damaged.
        bad = known_bad.get(path.name, set())
        if not bad and not (row.acknowledged_at and path.stat().st_size == row.size):
            continue
        digest = exportmedia.sha256_of(path)
        if row.acknowledged_at and digest == row.sha256:
            doomed.append(path)
        elif digest in bad:
            damaged.append((path, digest))
    for path in receipts.on_media(media_path, quiet=True):  # collect said the odd ones
        if not _ours(path, sources):
            continue
        try:
            body = signed.load(path)["body"]
        except ChatvaultError:
            continue
        sha, name = body.get("bundle_sha256"), body.get("bundle_file")
        row = state.bundle_by_sha(sha) if isinstance(sha, str) else None
        if row is None and isinstance(name, str):
            row = state.bundle_by_name(name)  # a receipt about a damaged copy of it
        if row is not None and (row.acknowledged_at or row.abandoned_at):
            doomed.append(path)
    gone = exportmedia.remove([p for p, _ in damaged])
    for path, digest in damaged:
        state.mark_stray_removed(digest)
        if path.name in gone:
            state.mark_off_media(path.name)
        log.warning("removed a damaged copy of %s from the media (sha256 %s…, reported by a "
                    "vault)", path.name, digest[:16])
    if report is not None:
        report.damaged_removed = gone
    removed: list[str] = []
    for path in doomed:  # one by one (each made durable), so a crash may stop between two
        removed += exportmedia.remove([path])
        fault_hook("tidy-removed")
    return gone + removed


def collect(state: ExportState, cfg: ExporterConfig, trust: Any, media_path: Path,
            outbox: Path) -> ReceiptReport:
    """Judge every receipt on the media, settle what is safe, tidy the stick."""
    report = ReceiptReport()
    sources = set(state.known_sources()) | {s.name for s in cfg.sources}
    try:
        for path in receipts.on_media(media_path):
            report.outcomes.append(judge(path, state, cfg, trust, sources))
        for finding in auditwatch.audit_findings(state):
            log.log(logging.ERROR if finding.level == "CRITICAL" else logging.WARNING, "%s",
                    finding.message())
            report.audit_findings.append(finding.describe())
        folder = media.folder(media_path, media.RECEIPTS)
        for path in media.oversized_files(folder, receipts.SUFFIX, signed.MAX_DOCUMENT):
            report.outcomes.append(_refused(path, InputRejected(
                f"larger than {signed.MAX_DOCUMENT} bytes; not a receipt")))
        report.completed = [r.file_name for r in settle(state, cfg, outbox)]
        report.removed_from_media = tidy_media(state, media_path, sources, report)
    except ChatvaultError as exc:
        report.error = exc
        log.warning("receipts on %s: %s", media_path, exc.detail)
    return report


