"""Crash recovery and the lost-state rule of the exporter.

Recovery (:func:`recover`) finishes or undoes what a killed run left in the
local outbox (the crash rule is in :mod:`vault.exporter`).

The lost-state rule. A state database that is missing, or older than what
this home has sealed, would make the next run seal a sequence number the
vault already holds: a fork it refuses, and every later bundle with it.
Every command therefore first checks (:func:`check_state`) the chain
register ``H/chains.json`` (the head of each source's chain, rewritten
atomically after every command), the local outbox and the stick for bundles
the state does not know, and refuses (exit 4) with what to do. A bundle in
the outbox that the state does not know is deleted only when it is exactly
what an interrupted run leaves (the next sequence of its source, never
recorded anywhere); anything else is left in place and reported.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from vault import atomic, bundle, canonical, exportstate, media, timestamps
from vault.errors import ChatvaultError, MediaError, PolicyRefused
from vault.exportconfig import ExporterConfig
from vault.exportstate import ExportState
from vault.home import Home

log = logging.getLogger("vault.exporter")  # the name operators filter exporter logs by

REGISTER = "chains.json"
_BUNDLE_NAME = re.compile(r"^(?P<source>.+)-(?P<sequence>[0-9]{8})\.cvb$")
_WAY_OUT = ("Nothing was changed. Restore {state}/ from a backup taken after the last export "
            "run, or start new chains under new source names (README: 'If the exporter state "
            "is lost')")


class StateLost(PolicyRefused):
    """The state database is gone, but this home has sealed bundles before."""

    code = "state_lost"


class StateRolledBack(PolicyRefused):
    """The state database is older than the chains this home has sealed."""

    code = "state_rolled_back"


def read_register(home: Path) -> dict[str, tuple[int, str | None]] | None:
    """The chain heads ``H/chains.json`` holds; None when absent, ValueError if unreadable."""
    try:
        doc = json.loads((Path(home) / REGISTER).read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(exc.strerror) from None
    sources = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(sources, dict):
        raise ValueError("no 'sources' table")
    heads = {}
    for name, head in sources.items():
        try:
            heads[str(name)] = (int(head["sequence"]), head.get("sha256"))
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(f"bad entry for {name!r}") from None
    return heads


def write_register(home: Path, state: ExportState) -> None:
    """Bring ``H/chains.json`` up to the state's chain heads (never backwards)."""
    try:
        old = read_register(home)
    except ValueError:
        old = None
    heads = dict(old or {})
    for name in state.known_sources():
        seq, sha = state.chain(name)
        if seq >= heads.get(name, (0, None))[0]:
            heads[name] = (seq, sha)
    if old is not None and heads == old:
        return
    doc = {"kind": "chatvault-export-chains", "updated_at": timestamps.now_utc(),
           "about": "the last bundle sealed per source; see 'If the exporter state is "
                    "lost' in the README before changing or deleting this file",
           "sources": {n: {"sequence": q, "sha256": h} for n, (q, h) in heads.items()}}
    atomic.write_bytes(Path(home) / REGISTER, canonical.dumps(doc) + b"\n", 0o600)


def _interrupted(state: ExportState | None, name: str,
                 register: dict[str, tuple[int, str | None]] | None) -> bool:
    """Whether an unrecorded outbox file is what a run killed before recording leaves."""
    found = _BUNDLE_NAME.match(name)
    if found is None:
        return False
    src, seq = found["source"], int(found["sequence"])
    head = state.chain(src)[0] if state is not None else 0
    return seq == head + 1 and (register or {}).get(src, (0, None))[0] < seq


def _signed_by_us(path: Path, sign_pk: bytes) -> bool:
    try:
        return bool(bundle.inspect(path)["signer_key"] == sign_pk.hex())
    except (ChatvaultError, OSError):
        return False


def _evidence(home: Path, cfg: ExporterConfig, state: ExportState | None,
              media_path: Path | None) -> tuple[list[str], list[str]]:
    """(what the state lacks of the register, other bundles it does not know)."""
    names = {s.name for s in cfg.sources}
    heads = {n: state.chain(n) if state is not None else (0, None) for n in names}
    behind: list[str] = []
    unknown: list[str] = []
    try:
        register = read_register(home)
    except ValueError as exc:
        register = None
        if state is None:
            unknown.append(f"{home / REGISTER} exists but cannot be read ({exc})")
    for name in sorted(names & set(register or {})):
        seq, sha = (register or {})[name]
        have, have_sha = heads[name]
        if have < seq or (have == seq > 0 and have_sha != sha):
            behind.append(f"{name} up to #{seq}")
    recorded = state.bundle_by_name if state is not None else (lambda name: None)
    for path in sorted(Path(home, "outbox").glob("*.cvb")):
        found = _BUNDLE_NAME.match(path.name)
        if (found and found["source"] in names and recorded(path.name) is None
                and not _interrupted(state, path.name, register)):
            unknown.append(f"{path} is not recorded in the state")
    if media_path is not None and Path(media_path).is_dir():
        sign_pk = Home(home).public().sign_pk
        try:
            on_stick = media.safe_files(media.folder(media_path, media.OUTBOX), ".cvb", 2**63,
                                        quiet=True)  # said by the delivery to this folder
        except MediaError:
            on_stick = []  # only more evidence; the run reports the stick's trouble itself
        for path in on_stick:
            found = _BUNDLE_NAME.match(path.name)
            if (found and found["source"] in names and recorded(path.name) is None
                    and _signed_by_us(path, sign_pk)):
                unknown.append(f"{path.name} on the stick at {media_path} is signed by this "
                               "exporter but not recorded in the state")
    return behind, unknown


def check_state(home: Path, cfg: ExporterConfig, state: ExportState | None,
                media_path: Path | None = None) -> ChatvaultError | None:
    """Why the state cannot continue this home's chains without a fork, or None."""
    home = Path(home)
    db = home / "state" / exportstate.FILE_NAME
    behind, unknown = _evidence(home, cfg, state, media_path)
    if not behind and not unknown:
        return None
    found = [f"{b} (per {home / REGISTER})" for b in behind] + unknown
    shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    way_out = _WAY_OUT.format(state=home / "state")
    if not db.exists() or state is None or not state.known_sources():
        what = "is missing" if not db.exists() else "is empty"
        return StateLost(f"{db} {what}, but this home has sealed bundles before: {shown}. "
                         "Starting again would seal sequence numbers the vault already holds, "
                         f"which it refuses as a fork. {way_out}")
    ends = ", ".join(f"{n} #{state.chain(n)[0]}" for n in sorted(s.name for s in cfg.sources))
    return StateRolledBack(f"{db} ends at {ends}, but this home has sealed more: {shown}. "
                           "The state was rolled back (restored from an older backup?) and "
                           f"the next bundle would fork its chain at the vault. {way_out}")


def recover(state: ExportState, outbox: Path,
            register: dict[str, tuple[int, str | None]] | None = None) -> list[str]:
    """Undo what an interrupted run left half-done in the local outbox."""
    notes = []
    removed = atomic.remove_stale_temporaries(outbox)
    if removed:
        notes.append(f"removed {removed} temporary file(s) of an interrupted run")
    for path in sorted(outbox.glob("*.cvb")):
        if path.is_symlink() or not path.is_file():
            continue
        row = state.bundle_by_name(path.name)
        if row is None and _interrupted(state, path.name, register):
            path.unlink()
            notes.append(f"{path.name} was sealed by an interrupted run but never "
                         "recorded: removed; its conversations are sealed again")
        elif row is None:
            notes.append(f"{path.name} is not recorded in the state (a chain it does not "
                         "know): left in place; carry it to the vault by hand if it never "
                         "got there, then delete it")
        elif row.acknowledged_at:
            path.unlink()
            state.mark_local_deleted(row.sha256)
            notes.append(f"{path.name} was already acknowledged: local copy removed")
    # A run killed in acks.settle after deleting an acknowledged bundle's local copy
    # but before recording it leaves no outbox file for the loop above to find, and
    # settle only looks at unacknowledged bundles: without this the state would say
    # forever that the local copy was never deleted.
    for row in state.bundles():
        if (row.acknowledged_at and row.local_deleted_at is None
                and not (outbox / row.file_name).exists()):
            state.mark_local_deleted(row.sha256)
            notes.append(f"{row.file_name} was already acknowledged and its local copy "
                         "removed: recorded")
    for note in notes:
        log.warning("recovery: %s", note)
    return notes
