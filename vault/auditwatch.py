"""The online side's watch on each vault's audit log, through the receipts it signs.

Every accepted receipt that states the vault's audit position
(:func:`vault.audit.position`; older vaults state none and are not judged)
is kept per vault (:func:`keep_position`, called by :mod:`vault.acks`), and
:func:`audit_findings` judges all kept positions together, ordered by the
receipts' ``at`` (sticks come back out of order; a replayed receipt adds
nothing): the same chain and entry number with two heads is a *rewritten*
log, a receipt signed later showing fewer entries of a chain than one signed
earlier a *cut* (both CRITICAL), a second chain of a known vault a *new
chain* (WARNING: a rebuild starts one). A person who checked a finding
dismisses it (``export resolve audit-…``, with a note); for a cut or rewrite
that excuses every pair of receipts of that chain signed on either side of
the span the finding named, so the same event is not reported again, while
a later one is.

What it cannot see: a vault that sends no more receipts, a change newer
than every receipt seen, a log cut and grown again past every entry number
seen before the next receipt, a log rewritten from its first entry (it looks
like a rebuild: a WARNING only); a vault clock set back looks like a cut.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vault import audit, receipts, timestamps
from vault.errors import UsageError
from vault.exportstate import ExportState

log = logging.getLogger(__name__)


#: kinds of audit finding and their level in ``export status``
AUDIT_LEVELS = {"rewritten": "CRITICAL", "cut": "CRITICAL", "new_chain": "WARNING"}
_Windows = list[tuple[datetime, datetime]]


def _when(text: Any) -> datetime | None:
    try:
        return timestamps.parse(text)
    except timestamps.TimestampError:
        return None


def keep_position(state: ExportState, receipt: receipts.Receipt, path: Path) -> None:
    """Keep the audit position an accepted receipt states (older vaults state none)."""
    pos = audit.Position.stated(receipt.body)
    at = receipt.body.get("at")
    if pos is not None and isinstance(at, str) and _when(at) is not None:
        state.record_audit(receipt.vault, pos.chain, pos.entries, pos.head, at, path.name)


@dataclass(frozen=True)
class Seen:
    """One audit position a receipt stated, and when the vault signed that receipt."""

    vault: str
    chain: str
    entries: int
    head: str
    at: str
    receipt: str
    moment: datetime

    def describe(self) -> dict[str, Any]:
        return {"chain": self.chain, "entries": self.entries, "head": self.head,
                "receipt_at": self.at, "receipt": self.receipt}


@dataclass(frozen=True)
class AuditFinding:
    """Two receipts of one vault that disagree about its audit log ``chain``."""

    kind: str  # rewritten | cut | new_chain
    chain: str
    earlier: Seen
    later: Seen

    @property
    def vault(self) -> str:
        return self.later.vault

    @property
    def level(self) -> str:
        return AUDIT_LEVELS[self.kind]

    @property
    def id(self) -> str:
        key = f"{self.kind}|{self.vault}|{self.chain}"
        if self.kind != "new_chain":  # a new chain is one finding however it was first seen
            key += f"|{self.earlier.at}|{self.later.at}"
        return "audit-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]

    def message(self) -> str:
        e, n, v, c = self.earlier, self.later, self.vault, self.chain[:16]
        todo = f"'chatvault export resolve {self.id} --note \"...\"'"
        if self.kind == "rewritten":
            what = (f"vault {v}: its audit log was rewritten: entry {e.entries} of chain {c} "
                    f"had head {e.head[:16]} in the receipt signed {e.at} ({e.receipt}), head "
                    f"{n.head[:16]} in the one signed {n.at} ({n.receipt})")
        elif self.kind == "cut":
            what = (f"vault {v}: the newest entries were cut off its audit log: the receipt "
                    f"signed {n.at} ({n.receipt}) shows {n.entries} entries of chain {c}, the "
                    f"one signed earlier, {e.at} ({e.receipt}), showed {e.entries}")
        else:
            return (f"vault {v}: new audit chain {c}, first in the receipt signed {n.at} "
                    f"({n.receipt}; before it chain {e.chain[:16]} showed {e.entries} entries "
                    f"at {e.at}): a rebuild starts one; confirm with the vault's operator that "
                    f"it was rebuilt then, then {todo}")
        return (f"{what} -> its log since then cannot be trusted: have the vault's operator run "
                "'chatvault audit verify' and explain it (a store put back from a backup or a "
                f"vault clock set back looks like this too); once checked: {todo}")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "level": self.level, "vault": self.vault,
                "chain": self.chain, "earlier": self.earlier.describe(),
                "later": self.later.describe(), "message": self.message()}


def _order(s: Seen) -> tuple[datetime, str, str]:
    return s.moment, s.head, s.receipt


def _excused(a: Seen, b: Seen, windows: _Windows) -> bool:
    """Whether a dismissed finding's span lies between ``a`` and the later ``b``."""
    return any(a.moment < late and b.moment > early for early, late in windows)


def _rewritten(rows: list[Seen], windows: _Windows) -> tuple[Seen, Seen] | None:
    """The first-signed pair with the same entry number and different heads."""
    found: tuple[Seen, Seen] | None = None
    by_entries: dict[int, list[Seen]] = {}
    for s in rows:
        by_entries.setdefault(s.entries, []).append(s)
    for group in by_entries.values():
        if len({s.head for s in group}) < 2:
            continue
        group.sort(key=_order)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if (a.head != b.head and not _excused(a, b, windows)
                        and (found is None or b.moment < found[1].moment)):
                    found = (a, b)
    return found


def _cut(rows: list[Seen], windows: _Windows) -> tuple[Seen, Seen] | None:
    """The first receipt showing fewer entries than one signed before it (not excused).

    A receipt ``b`` may be compared only with receipts signed at or after the
    end of every dismissed span that began before it (:func:`_excused`), so
    one sweep per such starting point finds the first cut in order of ``at``.
    """
    rows = sorted(rows, key=_order)

    def start_of(b: Seen) -> datetime | None:
        return max((late for early, late in windows if early < b.moment), default=None)

    found: tuple[Seen, Seen] | None = None
    for start in [None, *sorted({late for _, late in windows})]:
        best: Seen | None = None  # the most entries among receipts signed strictly earlier
        for _, group in itertools.groupby(rows, key=lambda s: s.moment):
            same = list(group)
            if start is not None and same[0].moment < start:
                continue
            for b in same:
                if (best is not None and b.entries < best.entries and start_of(b) == start
                        and (found is None or b.moment < found[1].moment)):
                    found = (best, b)
            top = max(same, key=lambda s: s.entries)
            if best is None or top.entries > best.entries:
                best = top
    return found


def audit_findings(state: ExportState) -> list[AuditFinding]:
    """The open findings over every audit position kept, per vault (module doc)."""
    seen = [Seen(*row, moment) for row in state.audit_seen()
            if (moment := _when(row[4])) is not None]
    resolved = state.audit_resolutions()
    accepted = {(r["vault"], r["chain"]) for r in resolved if r["kind"] == "new_chain"}
    windows: dict[tuple[str, str], _Windows] = {}
    for r in resolved:
        early, late = _when(r["earlier_at"]), _when(r["later_at"])
        if r["kind"] != "new_chain" and early is not None and late is not None:
            windows.setdefault((r["vault"], r["chain"]), []).append((early, late))
    out: list[AuditFinding] = []
    for vault in sorted({s.vault for s in seen}):
        mine = [s for s in seen if s.vault == vault]
        empty = [s for s in mine if s.chain == audit.GENESIS]  # cuts every chain short
        chains: dict[str, list[Seen]] = {}
        for s in mine:
            if s.chain != audit.GENESIS:
                chains.setdefault(s.chain, []).append(s)
        firsts = {c: min(rows, key=_order) for c, rows in chains.items()}
        order = sorted(chains, key=lambda c: _order(firsts[c]))
        for chain in order[1:]:
            first = firsts[chain]
            before = max((s for c in order if c != chain for s in chains[c]
                          if s.moment <= first.moment), key=_order, default=firsts[order[0]])
            if (vault, chain) not in accepted:
                out.append(AuditFinding("new_chain", chain, before, first))
        for chain in order:
            w = windows.get((vault, chain), [])
            rewrite = _rewritten(chains[chain], w)
            cut = _cut(chains[chain] + empty, w)
            out += [AuditFinding("rewritten", chain, *rewrite)] if rewrite else []
            out += [AuditFinding("cut", chain, *cut)] if cut else []
    return out


def is_audit_finding(name: str) -> bool:
    """Whether ``export resolve`` was given an audit finding (``audit-…``) or ``audit`` (all)."""
    return name == "audit" or re.fullmatch(r"audit-[0-9a-f]{10}", name) is not None


def resolve_audit(state: ExportState, which: str, *, vault: str | None,
                  note: str) -> list[dict[str, Any]]:
    """Dismiss the open audit finding ``which`` (``audit``: all) once a person checked it."""
    todo = [f for f in audit_findings(state) if which in ("audit", f.id)
            and vault in (None, f.vault)]
    if not todo:
        raise UsageError(f"no open audit finding {'' if which == 'audit' else which + ' '}"
                         f"{f'of vault {vault} ' if vault else ''}to resolve ('chatvault "
                         "export status' lists them)")
    who = audit.operator()
    for f in todo:
        state.resolve_audit(f.vault, f.kind, f.chain, f.earlier.at, f.later.at, f.id, who, note)
        log.warning("audit finding %s (%s) of vault %s dismissed by %s: %s", f.id, f.kind,
                    f.vault, who, note)
    return [{**f.describe(), "resolved_by": who, "note": note} for f in todo]
