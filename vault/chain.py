"""Each source's chain of bundles, as the vault holds it: gaps, replays, forks, rollback.

Every export bundle names its source, its sequence number and the SHA-256 of
the bundle before it (``prev_hash``; none for #1). Checked against the
``bundles`` table, inside the ingest transaction (so the answer still holds
at commit):

* same sequence, same hash: a **replay**, skipped as a duplicate;
* same sequence, another hash: a **fork**, refused (exit 4, quarantined,
  CRITICAL in ``vault status`` until a person resolves it);
* a predecessor held here whose hash is not this bundle's ``prev_hash``,
  or a successor held here that names another predecessor: the exporter's
  history was **rolled back** (its state restored from an old backup) or
  forked; refused the same way. So are a #1 that names a predecessor and a
  #n > 1 that names none (the exporter's chain was restarted). Refusing is
  the safe side: nothing ingested changes, the bundle stays in quarantine;
* a predecessor not held yet: a **gap**, ingested anyway (the data is
  verified and safe to keep) and reported until the missing bundles arrive.
"""

from __future__ import annotations

import re
from typing import Any

from vault import timestamps
from vault.errors import ForkDetected, MalformedHeader

# used with fullmatch: "$" also matches before a final newline
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def source_name_ok(name: object) -> bool:
    """A source name the vault takes: ``[A-Za-z0-9._-]``, at most 128, no final newline.

    It names archive folders and bundle files, so ``web\\n`` (which a ``$``
    pattern let through) or ``../x`` must never reach the vault's disk.
    """
    return isinstance(name, str) and _SOURCE_NAME.fullmatch(name) is not None


def bundle_row(conn: Any, where: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    """The ``bundles`` row matching ``where``, as a dict, or None."""
    cur = conn.execute(f"SELECT * FROM bundles WHERE {where}", params)
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row)) if row else None


def checked_meta(meta: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The verified header's meta of an export bundle, its chain fields checked."""
    assert meta is not None
    if meta.get("kind") != "export":
        raise MalformedHeader(f"a {meta.get('kind')!r} bundle cannot be ingested "
                              "(expected an export bundle)", path=name)
    if not source_name_ok(meta["source"]):
        raise MalformedHeader("source name is not [A-Za-z0-9._-]", path=name)
    if meta["sequence"] < 1:
        raise MalformedHeader(f"sequence {meta['sequence']} is not positive", path=name)
    prev = meta.get("prev_hash")
    if prev is not None and not (isinstance(prev, str) and _SHA256.fullmatch(prev)):
        raise MalformedHeader("prev_hash is not a SHA-256", path=name)
    if not timestamps.is_canonical(meta["created_at"]):
        raise MalformedHeader("created_at is not a canonical UTC time", path=name)
    if not isinstance(meta.get("context", {}), dict):
        raise MalformedHeader("context is not an object", path=name)
    return meta


def holds(conn: Any, sha: str) -> bool:
    """Whether a bundle with this SHA-256 is held."""
    return conn.execute("SELECT 1 FROM bundles WHERE sha256 = ?", (sha,)).fetchone() is not None


def held_sizes(conn: Any) -> set[int]:
    """The file sizes of the bundles held (a file of another size is none of them)."""
    return {size for (size,) in conn.execute("SELECT DISTINCT size FROM bundles")}


def check(conn: Any, meta: dict[str, Any], sha: str) -> dict[str, Any] | None:
    """The bundle row this one duplicates, or None; raises ForkDetected."""
    src, seq, prev = meta["source"], meta["sequence"], meta.get("prev_hash")
    here = f"{src} #{seq}"
    same = bundle_row(conn, "source = ? AND sequence = ?", (src, seq))
    if same is not None:
        if same["sha256"] == sha:
            return same
        # The code says "fork" wherever the reason is shown (fork: <this text>).
        raise ForkDetected(f"{here} was already ingested with sha256 "
                           f"{same['sha256'][:16]}…, this bundle is {sha[:16]}…")
    if seq == 1 and prev is not None:
        raise ForkDetected(f"{here} names a predecessor; a chain starts without one")
    if seq > 1 and prev is None:
        raise ForkDetected(f"{here} names no predecessor: the exporter's chain was restarted")
    before = bundle_row(conn, "source = ? AND sequence = ?", (src, seq - 1))
    if before is not None and before["sha256"] != prev:
        raise ForkDetected(f"{here} follows {str(prev)[:16]}…, but the #{seq - 1} held "
                           f"here is {before['sha256'][:16]}… (a rollback or a fork)")
    after = bundle_row(conn, "source = ? AND sequence = ?", (src, seq + 1))
    if after is not None and after["prev_hash"] != sha:
        raise ForkDetected(f"the #{seq + 1} held here follows "
                           f"{str(after['prev_hash'])[:16]}…, not this {here} (a rollback "
                           "or a fork)")
    return None


def gaps(conn: Any, source: str | None = None) -> dict[str, list[tuple[int, int]]]:
    """Missing sequence ranges (first, last) per source, from 1 to the highest held."""
    sql = "SELECT source, sequence FROM bundles"
    params: tuple[Any, ...] = ()
    if source is not None:
        sql, params = sql + " WHERE source = ?", (source,)
    out: dict[str, list[tuple[int, int]]] = {}
    last: dict[str, int] = {}
    for src, seq in conn.execute(sql + " ORDER BY source, sequence", params):
        expected = last.get(src, 0) + 1
        if seq > expected:
            out.setdefault(src, []).append((expected, seq - 1))
        last[src] = seq
    return out


def gap_note(conn: Any, meta: dict[str, Any]) -> str | None:
    """The receipt's note when sequences before this bundle are still missing."""
    missing = [g for g in gaps(conn, meta["source"]).get(meta["source"], [])
               if g[0] < meta["sequence"]]
    if not missing:
        return None
    ranges = ", ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in missing)
    return (f"chain gap: {meta['source']} {ranges} not ingested yet (never arrived, or "
            "quarantined); this one ingested anyway")
