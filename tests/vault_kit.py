"""Helpers shared by the store, ingest, audit and status tests (no tests here).

Bundles are sealed with the real writer, chained like the exporter chains
them, and put on a folder standing for the stick (``<root>/chatvault/outbox``).
"""

from __future__ import annotations

import io
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import Pair
from vault import bundle, canonical, media, records, store
from vault.bundle import BundleWriter


def conv(cid: str, texts: list[str], *, at: str = "2024-03-14T09:05:12Z",
         email: str | None = "mara.quint@example.org", phone: str | None = "+44 7700 900123",
         **extra: Any) -> dict[str, Any]:
    """A small valid conversation: one customer, one agent, messages alternating."""
    customer: dict[str, Any] = {"id": "c1", "role": "customer", "name": "Mara Quint"}
    if email:
        customer["email"] = email
    if phone:
        customer["phone"] = phone
    people = [customer, {"id": "a1", "role": "agent", "name": "Ines Duarte"}]
    msgs = [{"id": f"m{i}", "at": at, "from": "c1" if i % 2 == 0 else "a1", "text": t}
            for i, t in enumerate(texts)]
    return {"conversation_id": cid, "started_at": at, "participants": people,
            "messages": msgs, **extra}


def stick(root: Path) -> Path:
    """A folder standing for a stick, with an empty outbox."""
    (root / media.ROOT / media.OUTBOX).mkdir(parents=True, exist_ok=True)
    return root


def outbox(media_root: Path) -> Path:
    return media_root / media.ROOT / media.OUTBOX


@dataclass
class Chain:
    """Seals successive bundles of one or more sources, chained by prev_hash."""

    pair: Pair
    folder: Path
    context: dict[str, Any] = field(default_factory=lambda: {"phone_region": "GB"})
    last: dict[str, tuple[int, str]] = field(default_factory=dict)

    def seal(self, convs: list[dict[str, Any]], *, source: str = "web",
             sequence: int | None = None, prev: str | None | bool = True,
             blobs: dict[str, bytes] | None = None, name: str | None = None,
             context: dict[str, Any] | None = None) -> bundle.Sealed:
        """The next bundle of ``source`` (or an explicit sequence / predecessor)."""
        seq_last, hash_last = self.last.get(source, (0, None))
        seq = sequence if sequence is not None else seq_last + 1
        if prev is True:
            prev = hash_last if seq == seq_last + 1 else None
        self.folder.mkdir(parents=True, exist_ok=True)
        out = self.folder / (name or bundle.file_name(source, seq))
        w = BundleWriter(out, self.pair.exporter.identity(), [self.pair.vault.public()],
                         source=source, sequence=seq, prev_hash=prev or None,
                         context=self.context if context is None else context)
        for c in convs:
            data, summary = records.canonical_record(canonical.loads(canonical.dumps(c)))
            w.add_record(data, summary)
        for sha, content in (blobs or {}).items():
            w.add_blob(sha, io.BytesIO(content), len(content))
        sealed = w.finish()
        if seq >= seq_last:
            self.last[source] = (seq, sealed.sha256)
        return sealed


def ingested(pair: Pair, root: Path, convs: list[dict[str, Any]]) -> Pair:
    """``pair`` with ``convs`` sealed onto a stick under ``root`` and ingested by its vault."""
    from vault import ingest

    media_root = stick(root / "stick")
    Chain(pair, outbox(media_root)).seal(convs)
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def open_store(pair: Pair) -> sqlite3.Connection:
    return store.open_store(pair.vault_path / store.FILE_NAME)


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def consistent(conn: sqlite3.Connection) -> None:
    """The store's own checks: integrity, foreign keys, FTS index, derived counts."""
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    assert count(conn, "messages_fts") == count(conn, "messages")
    assert conn.execute("SELECT count(*) FROM conversations c WHERE message_count != "
                        "(SELECT count(*) FROM messages m WHERE m.conversation = c.id)"
                        ).fetchone()[0] == 0
    orphans = conn.execute("SELECT count(*) FROM conversations c WHERE NOT EXISTS "
                           "(SELECT 1 FROM bundles b WHERE b.id = c.bundle)").fetchone()[0]
    assert orphans == 0
