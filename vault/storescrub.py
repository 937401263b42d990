"""Scrubbing the store's files after data is deleted, and proving an erasure left no trace.

SQLite does not forget on DELETE: FTS5 keeps deleted terms in old index
segments until they are merged, freed pages keep their bytes unless
``secure_delete`` zeroes them, and the WAL holds old page images until a
checkpoint. :func:`scrub` deals with each and then reads the files
themselves (:func:`byte_scan`) for the subject's identifiers as they were
written: only a scan that finds nothing proves the erasure.

The scan matches bytes, in any ASCII letter case, anywhere: a needle in a
free page, an index segment or between two columns counts. Its one
allowance is for other people's longer identifiers that contain a needle
(``ana@example.org`` inside ``diana@example.org``): each occurrence of such
a one, found in the records (:func:`others_containing`), takes its needle
hits off the count. Where traces remain, :func:`holders` says where: which
conversations, which other tables (a note, a reason someone typed).
"""

from __future__ import annotations

import mmap
import sqlite3
import time
from pathlib import Path
from typing import Any

from vault import redaction, store, tombstones
from vault.erasureplan import Plan, needle_pattern, scan_records, stored_record, text_test
from vault.errors import ChatvaultError
from vault.subjects import VaultHandle


class ErasureIncomplete(ChatvaultError):
    """The subject's bytes are still in the store's files after every scrub step."""

    code = "erasure_incomplete"
    #: traces the byte scan found (None: the scan could not run)
    found: int | None = None


def scrub(home: Path, conn: sqlite3.Connection, needles: set[bytes] | None = None,
          others: set[bytes] | None = None) -> dict[str, Any]:
    """Leave no deleted byte in ``store.db`` or its WAL; prove it for ``needles``.

    ``others`` are other people's identifiers that contain a needle
    (:func:`byte_scan`): a needle inside one of them is no trace.

    FTS5 keeps deleted terms in old segments until they are merged:
    'optimize' merges every segment into one, freeing (and, with
    secure_delete, zeroing) the old pages. Then a TRUNCATE checkpoint moves
    every page into the database and empties the WAL. If a scan still
    finds a needle (a free page that escaped zeroing), VACUUM rewrites the
    file and the scan runs again.
    """
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
    _checkpoint(conn)
    paths = [Path(home) / store.FILE_NAME, Path(home) / (store.FILE_NAME + "-wal")]
    needles, others = needles or set(), others or set()
    found = byte_scan(paths, needles, others)
    vacuumed = False
    if found:
        conn.execute("VACUUM")
        _checkpoint(conn)
        vacuumed = True
        found = byte_scan(paths, needles, others)
    if found:
        exc = ErasureIncomplete(f"{found} trace(s) of the subject remain in the store's "
                                "files after optimize, checkpoint and VACUUM")
        exc.found = found
        raise exc
    return {"fts_optimized": True, "wal_truncated": True, "vacuum": vacuumed,
            "scanned_for": len(needles), "found": 0, "others_containing": len(others)}


def _checkpoint(conn: sqlite3.Connection, attempts: int = 3) -> None:
    """TRUNCATE checkpoint; each attempt already waits out the busy timeout."""
    for _ in range(attempts):
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return
        time.sleep(0.5)
    raise ErasureIncomplete("the WAL could not be truncated: another process keeps the "
                            "store open (stop the daemon and run the command again)")


def byte_scan(paths: list[Path], needles: set[bytes], others: set[bytes] | None = None
              ) -> int:
    """How many of ``needles`` occur (any letter case) in the files at ``paths``.

    Occurrences inside ``others`` (longer identifiers of other people that
    contain a needle) are taken off: each occurrence of one of them holds
    as many needle hits as the needles found in it.
    """
    pattern = needle_pattern(needles)
    if pattern is None:
        return 0
    inside = {o: sum(1 for _ in pattern.finditer(o)) for o in others or ()}
    outer = needle_pattern(inside)
    hits = 0
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            hits += sum(1 for _ in pattern.finditer(mm))  # type: ignore[arg-type]
            if outer is not None:
                hits -= sum(inside[_key(m.group(0), inside)]
                            for m in outer.finditer(mm))  # type: ignore[arg-type]
    return max(hits, 0)


def _key(found: bytes, inside: dict[bytes, int]) -> bytes:
    """The entry of ``inside`` a (case-insensitive) match stands for."""
    low = found.lower()
    return next(k for k in inside if k.lower() == low)


def others_containing(v: VaultHandle, p: Plan) -> set[bytes]:
    """Other people's addresses and numbers that contain one of the subject's as written.

    ``ana@example.org`` is inside ``diana@example.org``: the byte scan's hits
    inside those are no trace of the subject (:func:`byte_scan` takes them off).
    """
    wanted = {val for _, val in p.pairs}
    lowered = [n.lower() for n in p.needles]
    out: set[bytes] = set()
    regions: dict[int, str | None] = {}
    for rowid, _, _ in scan_records(v.conn, text_test(p.needles)):
        conv, bundle = stored_record(v.conn, rowid)
        region = tombstones.region_of_bundle(v.conn, v.home, bundle, v.region, regions)
        for text, _ in redaction.strings(conv):
            for span in redaction.find(text, region, loose=True):
                written = text[span.start:span.end].encode("utf-8")
                low = written.lower()
                if span.value not in wanted and low not in lowered and any(
                        n in low for n in lowered):
                    out.add(written)
    return out


def holders(conn: sqlite3.Connection, needles: set[bytes]) -> tuple[list[str], list[str]]:
    """Where the subject is still written: conversations, and other tables' text columns."""
    test = text_test(needles)
    if test is None:
        return [], []
    convs = [f"{src}/{cid}" for _, src, cid in scan_records(conn, test)]
    derived = {"conversations", "messages", "participants", "identifiers", "mentions",
               "attachment_refs"}
    places = []
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite%' AND name NOT LIKE "
                                         "'messages_fts%' ORDER BY name")]
    for table in tables:
        if table in derived:
            continue
        for col in [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")
                    if r[2].upper() in ("TEXT", "")]:
            n = conn.execute(f'SELECT count(*) FROM "{table}" WHERE '
                             f'chatvault_holds(CAST("{col}" AS TEXT))').fetchone()[0]
            if n:
                places.append(f"{table}.{col} ({n} row(s))")
    return convs, places
