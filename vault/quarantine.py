"""Quarantine: refused bundles, kept with their reason, never deleted.

A bundle the vault refuses (unreadable, forged, untrusted, a fork, an
invalid record...) is moved from staging to ``H/quarantine/<name>.<sha>.cvb``
with ``<...>.cvb.reason.json`` beside it (file name, SHA-256, error code,
the reason in words, exit code, source and sequence when the header could
be verified, media label and serial, time), and recorded in the
``quarantine`` table, where ``vault status`` finds it.

An entry is **resolved** by itself when a good copy of the same file is
ingested (a corrupted copy on one stick, a good one on the next); forks
never resolve by themselves: two different bundles claim one place in a
source's chain, and a person must find out why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vault import atomic, audit, canonical, chain, staging, store, timestamps
from vault.errors import (EXIT_POLICY, EXIT_REJECTED, ChatvaultError, ForkDetected,
                          PolicyRefused)

FOLDER = "quarantine"
_POLICY_CODES = {cls.code for cls in PolicyRefused.__subclasses__()} | {PolicyRefused.code}


def exit_code_of(code: str) -> int:
    """The exit code a recorded refusal stands for (policy 4, rejected input 3)."""
    return EXIT_POLICY if code in _POLICY_CODES else EXIT_REJECTED


def keep(home: Path, conn: Any, item: staging.Staged, exc: ChatvaultError,
         meta: dict[str, Any], media: tuple[str | None, str | None]) -> Path:
    """Move the staged copy into quarantine, write its reason, record it; returns its path."""
    folder = Path(home) / FOLDER
    folder.mkdir(exist_ok=True, mode=0o700)
    stem = item.bundle_file[:-4] if item.bundle_file.endswith(".cvb") else item.bundle_file
    kept = folder / f"{stem}.{item.sha256[:12]}.cvb"
    now = timestamps.now_utc()
    info = {"bundle_file": item.bundle_file, "sha256": item.sha256, "code": exc.code,
            "reason": exc.detail, "exit_code": exc.exit_code, "at": now,
            "source": meta.get("source"), "sequence": meta.get("sequence"),
            "media_label": media[0], "media_serial": media[1]}
    try:
        if kept.exists():
            staging.remove(item)  # the very same bytes are already kept
        else:
            os.replace(item.path, kept)
            atomic.fsync_dir(folder)
        atomic.write_bytes(kept.with_name(kept.name + ".reason.json"),
                           canonical.dumps(info) + b"\n", 0o600)
    except OSError as err:
        raise atomic.media_error(err, kept) from err
    with store.transaction(conn):
        conn.execute(
            "INSERT INTO quarantine (file, sha256, code, reason, source, sequence, signer, "
            "created_at, path, media_label, media_serial, at, last_seen_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (sha256) DO UPDATE SET "
            "code = excluded.code, reason = excluded.reason, last_seen_at = excluded.at, "
            "resolved_at = NULL, resolution = NULL",
            (item.bundle_file, item.sha256, exc.code, exc.detail, meta.get("source"),
             meta.get("sequence"), meta.get("signer"), meta.get("created_at"),
             str(kept.relative_to(home)), media[0], media[1], now, now))
        if exc.code != ForkDetected.code and chain.bundle_row(conn, "file = ?",
                                                              (item.bundle_file,)):
            conn.execute("UPDATE quarantine SET resolved_at = ?, resolution = ? "
                         "WHERE sha256 = ?", (now, "a good copy is already ingested",
                                              item.sha256))
        audit.append(conn, "quarantine", target=f"file:{item.bundle_file}",
                     detail={"sha256": item.sha256, "code": exc.code})
    return kept


def resolve_by(conn: Any, bundle_file: str, where: str) -> None:
    """A good copy of ``bundle_file`` was ingested (inside that transaction)."""
    conn.execute("UPDATE quarantine SET resolved_at = ?, resolution = ? WHERE file = ? "
                 "AND code != ? AND resolved_at IS NULL",
                 (timestamps.now_utc(), f"a good copy was ingested as {where}", bundle_file,
                  ForkDetected.code))


def recorded(conn: Any, sha256: str) -> tuple[str, str, str | None, int | None] | None:
    """(code, reason, source, sequence) of a quarantined bundle, or None."""
    row = conn.execute("SELECT code, reason, source, sequence FROM quarantine "
                       "WHERE sha256 = ?", (sha256,)).fetchone()
    return tuple(row) if row else None  # type: ignore[return-value]
