"""A canonical dump of a vault store, to compare two stores by what they hold.

:func:`dump` keys and orders every row by its content, never by rowid, and
leaves out what depends on when and from which stick a bundle came (ingest
times, media labels, per-ingest notes): two stores fed the same bundles in
different orders dump equal. The tests of ingest, erasure and rebuild
compare stores with it. Importable from :mod:`vault.store` too.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from vault.store import read_attachment


_DUMP_TABLES = {
    "bundles": "SELECT source, sequence, sha256, bundle_id, prev_hash, signer, file, "
               "archive_path, size, created_at, header_counts FROM bundles "
               "ORDER BY source, sequence",
    "quarantine": "SELECT file, sha256, code, source, sequence FROM quarantine ORDER BY sha256",
    "attachments": "SELECT sha256, size, chunks FROM attachments ORDER BY sha256",
    "tombstones": "SELECT kind, hash FROM tombstones ORDER BY kind, hash",
    "sources": "SELECT name FROM sources ORDER BY name",
}
_DUMP_CHILDREN = {
    "participants": "SELECT participant_id, role, name, email, phone, customer_id "
                    "FROM participants WHERE conversation = ? ORDER BY participant_id",
    "messages": "SELECT m.position, m.message_id, m.at, m.sender, m.text, m.direction, "
                "m.visibility, m.content_type, f.body, f.ids FROM messages m "
                "LEFT JOIN messages_fts f ON f.rowid = m.id "
                "WHERE m.conversation = ? ORDER BY m.position",
    "identifiers": "SELECT kind, value, participant_id FROM identifiers "
                   "WHERE conversation = ? ORDER BY kind, value, participant_id",
    "mentions": "SELECT m.message_id, x.kind, x.value FROM mentions x "
                "JOIN messages m ON m.id = x.message WHERE x.conversation = ? "
                "ORDER BY m.position, x.kind, x.value",
    "attachment_refs": "SELECT m.message_id, r.sha256, r.name, r.type, r.size "
                       "FROM attachment_refs r JOIN messages m ON m.id = r.message "
                       "WHERE r.conversation = ? ORDER BY m.position, r.sha256",
}


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur]


def dump(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything the store holds, keyed and ordered by content, never by rowid.

    Times of ingest, media labels and per-ingest notes are left out: two
    stores fed the same bundles in different orders dump equal. Attachment
    content is represented by the SHA-256 of what reads back.
    """
    out: dict[str, Any] = {name: _rows(conn, sql) for name, sql in _DUMP_TABLES.items()}
    for item in out["attachments"]:
        digest = hashlib.sha256()
        for part in read_attachment(conn, item["sha256"]):
            digest.update(part)
        item["content_sha256"] = digest.hexdigest()
    convs = []
    for row in _rows(conn, "SELECT id, source, conversation_id, platform, started_at, "
                           "ended_at, last_at, status, channel, title, customer_id, "
                           "message_count, participant_count, content_sha256, record, "
                           "bundle_sequence, retention_until FROM conversations "
                           "ORDER BY source, conversation_id"):
        conv_id = row.pop("id")
        for name, sql in _DUMP_CHILDREN.items():
            row[name] = _rows(conn, sql, (conv_id,))
        convs.append(row)
    out["conversations"] = convs
    return out

