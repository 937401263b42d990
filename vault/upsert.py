"""Upserting the conversations of one bundle into the store, fast.

:class:`Loader` runs inside the ingest transaction (:func:`store.transaction`)
and writes rows with ``executemany`` in batches, with row ids it assigns
itself (it holds the write lock, so nobody else can take them): a message's
id is known before it is written, so its index row and its mentions go in
the same batch without a round trip per message.

Identifiers are normalised as subject search will look them up
(:mod:`vault.recordidentifiers`): e-mail case-folded, phone numbers E.164
with the bundle's region (or the vault's default; without any region a
number written without ``+`` is kept as ``phone_unparsed`` digits, never
guessed), names as :func:`vault.identifiers.name_key`, platform ids as
``platform:id``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import zstandard

from vault import canonical, identifiers, timestamps
from vault.fulltext import index_text
from vault.merge import merge as merge_versions
from vault.merge import missing_ids
from vault.recordidentifiers import (Mention, participant_identifiers, phone, suspects,
                                     text_mentions)

#: attachments are stored as independent zstd frames of this much content
ATTACHMENT_CHUNK = 1024 * 1024
#: rows are written with executemany once this many messages are waiting
BATCH_MESSAGES = 5000

Identifier = tuple[str, str, "str | None"]  # kind, value, participant id
#: True: leave the conversation out; a dict: store this (redacted) copy instead
TombstoneCheck = Callable[[dict[str, Any], list[Identifier], list[list[Mention]]],
                          "bool | dict[str, Any]"]
#: (conversation id, last activity) -> True: retention purged this version of it
PurgeCheck = Callable[[str, "str | None"], bool]

_NOTHING: list[Mention] = []


def _text(value: Any) -> str | None:
    """A column value from a field the model leaves open (kept as JSON if not text)."""
    if value is None or isinstance(value, str):
        return value
    return canonical.dumps(value).decode("utf-8")


def _latest(*values: Any) -> str | None:
    present = [v for v in values if isinstance(v, str) and v]
    return max(present, key=timestamps.parse) if present else None


@dataclass
class LoadCounts:
    """What one bundle did to the store."""

    conversations: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    older: int = 0
    merged: int = 0
    tombstoned: int = 0
    purged: int = 0
    redacted: int = 0
    tombstoned_blobs: int = 0
    messages: int = 0
    blobs_new: int = 0
    blobs_known: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Batch:
    conversations: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    fts: list[tuple[Any, ...]] = field(default_factory=list)
    participants: list[tuple[Any, ...]] = field(default_factory=list)
    identifiers: list[tuple[Any, ...]] = field(default_factory=list)
    mentions: list[tuple[Any, ...]] = field(default_factory=list)
    refs: list[tuple[Any, ...]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


_CONV_COLUMNS = ("id, source, conversation_id, platform, started_at, ended_at, last_at, "
                 "status, channel, title, customer_id, message_count, participant_count, "
                 "content_sha256, record, bundle, bundle_sequence, retention_until, "
                 "first_ingested_at, ingested_at")
_INSERTS = {
    "conversations": f"INSERT INTO conversations ({_CONV_COLUMNS}) VALUES "
                     f"({', '.join('?' * 20)})",
    "messages": "INSERT INTO messages (id, conversation, position, message_id, at, sender, "
                "text, direction, visibility, content_type) VALUES (?,?,?,?,?,?,?,?,?,?)",
    "participants": "INSERT INTO participants (conversation, participant_id, role, name, "
                    "email, phone, customer_id) VALUES (?,?,?,?,?,?,?)",
    "identifiers": "INSERT INTO identifiers (conversation, kind, value, participant_id) "
                   "VALUES (?,?,?,?)",
    "mentions": "INSERT INTO mentions (conversation, message, kind, value) VALUES (?,?,?,?)",
    "refs": "INSERT INTO attachment_refs (conversation, message, sha256, name, type, size) "
            "VALUES (?,?,?,?,?,?)",
    "fts": "INSERT INTO messages_fts (rowid, body, ids) VALUES (?,?,?)",
}


class Loader:
    """Upserts conversations (and stores attachments) inside one open transaction.

    A conversation is identified by (bundle source, ``conversation_id``).
    Its fields are those of the bundle with the highest sequence number of
    that source, so bundles ingested in any order, or twice, give the same
    store. A newer version replaces the participants, messages,
    identifiers, mentions and index rows of the stored one; when it lacks
    messages the stored one holds, what it replaces them with is the two
    merged by message id (:mod:`vault.merge`, counted ``merged``). An older
    version arriving late is counted ``older`` and ignored, unless it holds
    messages the stored one lacks: those are merged in (``merged``) and the
    stored version's bundle and sequence are kept. ``merge=False`` is for
    a copy of the stored record itself (erasure's redacted copy), which
    must replace it whole.

    ``tombstone`` is called with the conversation and its identifiers and
    returns True when the conversation must be left out, or a redacted copy
    to store instead (see :mod:`vault.tombstones`); attachment content it
    reports erased (``blob_erased``) is not stored. ``purged`` is asked with
    the conversation id and its last activity, and True leaves it out: a
    conversation retention purged, met again (:mod:`vault.purges`).
    """

    def __init__(self, conn: sqlite3.Connection, *, source: str, bundle: int, sequence: int,
                 region: str | None, retention_days: int, now: str,
                 tombstone: TombstoneCheck | None = None,
                 purged: PurgeCheck | None = None, merge: bool = True) -> None:
        if not conn.in_transaction:
            raise RuntimeError("Loader needs an open transaction (store.transaction)")
        self.conn = conn
        self.source, self.bundle, self.sequence = source, bundle, sequence
        self.region, self.retention_days, self.now = region, retention_days, now
        self.tombstone, self.purged, self.merging = tombstone, purged, merge
        self.counts = LoadCounts()
        self._batch = _Batch()
        self._pending = 0
        self._next_conv = self._max_id("conversations") + 1
        self._next_msg = self._max_id("messages") + 1
        self._cctx = zstandard.ZstdCompressor(level=3)

    def _max_id(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])

    def add(self, conv: dict[str, Any], data: bytes, last_at: str | None) -> str:
        """Upsert one validated conversation given with its canonical bytes.

        A version that holds every message the stored one holds (the common
        case: the conversation grew) replaces it whole. One that lacks some
        (a platform that cut its history) is merged with it by message id
        (:mod:`vault.merge`): a backup keeps what it was given, and a
        message deleted at the source stays until it is erased. An older
        version arriving late adds the messages only it holds, so any order
        of bundles gives the same store as ``vault rebuild``.
        """
        self.counts.conversations += 1
        cid = conv["conversation_id"]
        if cid in self._batch.keys:
            self.flush()
        row = self.conn.execute(
            "SELECT id, content_sha256, bundle_sequence, first_ingested_at, bundle "
            "FROM conversations WHERE source = ? AND conversation_id = ?",
            (self.source, cid)).fetchone()
        bundle, seq, same, status = self.bundle, self.sequence, "unchanged", "updated"
        if row is not None and row[2] > self.sequence:
            got = self._merged(row[0], conv, high=False) if self.merging else None
            if got is None:
                self.counts.older += 1
                return "older"
            # the stored version stays the higher one: its bundle and sequence are kept
            conv, last_at = got[0], _latest(_last_activity(conv, last_at), got[1])
            data = canonical.dumps(conv)
            bundle, seq, same, status = row[4], row[2], "older", "merged"
        sha = hashlib.sha256(data).hexdigest()
        if status == "updated" and row is not None and row[1] != sha and self.merging:
            got = self._merged(row[0], conv, high=True)
            if got is not None:
                conv, last_at = got[0], _latest(_last_activity(conv, last_at), got[1])
                data = canonical.dumps(conv)
                sha, status = hashlib.sha256(data).hexdigest(), "merged"
        if row is not None and row[1] == sha:
            return self._same(row[0], bundle, seq, same)
        if self.purged is not None and self.purged(cid, _last_activity(conv, last_at)):
            self.counts.purged += 1
            return "purged"

        people, texts, mentions = self._rows(conv)
        verdict = self.tombstone(conv, people, mentions) if self.tombstone else False
        if verdict is True:
            self.counts.tombstoned += 1
            return "tombstoned"
        if isinstance(verdict, dict):
            # Erased identifiers redacted (vault.tombstones): store that copy.
            conv, data = verdict, canonical.dumps(verdict)
            sha = hashlib.sha256(data).hexdigest()
            self.counts.redacted += 1
            if row is not None and row[1] == sha:
                return self._same(row[0], bundle, seq, same)
            people, texts, mentions = self._rows(conv)
        if row is None:
            conv_id, first = self._next_conv, self.now
            self._next_conv += 1
            status = "new"
        else:
            conv_id, first = row[0], row[3]
            from vault.store import delete_conversation

            # attachment content is left alone: kept messages still resolve theirs
            delete_conversation(self.conn, conv_id)
        self._queue(conv_id, first, conv, data, sha, last_at, people, texts, mentions,
                    bundle, seq)
        setattr(self.counts, status, getattr(self.counts, status) + 1)
        self._batch.keys.add(cid)
        if self._pending >= BATCH_MESSAGES:
            self.flush()
        return status

    def _same(self, conv_id: int, bundle: int, seq: int, status: str) -> str:
        """The store already holds these bytes: only the bundle that carries them moves."""
        self.conn.execute("UPDATE conversations SET bundle = ?, bundle_sequence = ? "
                          "WHERE id = ?", (bundle, seq, conv_id))
        setattr(self.counts, status, getattr(self.counts, status) + 1)
        return status

    def _merged(self, conv_id: int, conv: dict[str, Any], *,
                high: bool) -> tuple[dict[str, Any], str | None] | None:
        """The stored version merged with ``conv`` and the stored last activity, or None.

        None when the merge would add nothing (``conv`` is then handled as
        before merging existed). ``conv`` goes through the tombstone filter
        first, so message and participant ids are compared as the stored,
        already filtered copy writes them; the merged record is filtered
        again in :meth:`add`, which leaves a filtered record as it is.
        """
        record, stored_last = self.conn.execute(
            "SELECT record, last_at FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        stored = canonical.loads(record)
        if not (missing_ids(conv, stored) if high else missing_ids(stored, conv)):
            return None
        if self.tombstone is not None:
            people, _, mentions = self._rows(conv)
            verdict = self.tombstone(conv, people, mentions)
            if verdict is True:
                return None
            conv = verdict if isinstance(verdict, dict) else conv
        out = merge_versions(conv, stored) if high else merge_versions(stored, conv)
        if out is (conv if high else stored):
            return None
        return out, stored_last

    def _rows(self, conv: dict[str, Any]) -> tuple[list[Identifier], list[str],
                                                   list[list[Mention]]]:
        """(participant identifiers, text of each message, mentions in each message)."""
        people: list[Identifier] = []
        for p in conv["participants"]:
            pid = p["id"]
            people += [(k, v, pid) for k, v in participant_identifiers(p, self.region)]
        if isinstance(conv.get("customer_id"), str) and conv["customer_id"]:
            people.append(("customer_id", conv["customer_id"], None))
        # The hot loop of ingest: one pass per message, cheap tests first.
        texts = [_message_text(m) if m.get("attachments") else m["text"]
                 for m in conv["messages"]]
        mentions = [_NOTHING] * len(texts)
        for i in suspects(texts):
            mentions[i] = text_mentions(texts[i], self.region)
        return list(dict.fromkeys(people)), texts, mentions

    def _queue(self, conv_id: int, first: str, conv: dict[str, Any], data: bytes, sha: str,
               last_at: str | None, people: list[Identifier], texts: list[str],
               mentions: list[list[Mention]], bundle: int, seq: int) -> None:
        b, msgs = self._batch, conv["messages"]
        last = _last_activity(conv, last_at)
        b.conversations.append((
            conv_id, self.source, conv["conversation_id"], _text(conv.get("platform")),
            conv["started_at"], conv.get("ended_at"), last, _text(conv.get("status")),
            _text(conv.get("channel")), _text(conv.get("title")),
            _text(conv.get("customer_id")), len(msgs), len(conv["participants"]), sha,
            data.decode("utf-8"), bundle, seq, self._expiry(last), first,
            self.now))
        for p in conv["participants"]:
            b.participants.append((conv_id, p["id"], p["role"], p.get("name"),
                                   identifiers.normalise_email(p.get("email")),
                                   phone(p.get("phone"), self.region), p.get("customer_id")))
        b.identifiers += [(conv_id, k, v, pid) for k, v, pid in people]
        base = self._next_msg
        self._next_msg += len(msgs)
        add_message, add_fts = b.messages.append, b.fts.append
        for pos, m in enumerate(msgs):
            mid = base + pos
            kind = m.get("content_type")
            add_message((mid, conv_id, pos, m["id"], m["at"], m["from"], m["text"],
                         m.get("direction"), m.get("visibility"),
                         kind if kind is None or isinstance(kind, str) else _text(kind)))
            found = mentions[pos]
            if found:
                add_fts((mid, index_text(texts[pos]),
                         " ".join(v[1:] for k, v in found if k == "phone")))
                b.mentions += [(conv_id, mid, k, v) for k, v in found]
            else:
                add_fts((mid, index_text(texts[pos]), ""))
            if m.get("attachments"):
                b.refs += [(conv_id, mid, a["sha256"], _text(a.get("name")),
                            _text(a.get("type")), a.get("size"))
                           for a in m["attachments"] if isinstance(a.get("sha256"), str)]
        self._pending += len(msgs) + 1
        self.counts.messages += len(msgs)

    def _expiry(self, last: str | None) -> str | None:
        if not self.retention_days or last is None:
            return None
        return timestamps.format_utc(timestamps.parse(last)
                                     + timedelta(days=self.retention_days))

    def flush(self) -> None:
        """Write what is queued (parents first, for the foreign keys)."""
        b = self._batch
        for name in ("conversations", "messages", "participants", "identifiers",
                     "mentions", "refs", "fts"):
            rows = getattr(b, name)
            if rows:
                self.conn.executemany(_INSERTS[name], rows)
        self._batch = _Batch()
        self._pending = 0

    def add_blob(self, sha256: str, size: int, content: Any) -> bool:
        """Store attachment content once; False when it was already stored (or erased)."""
        erased = getattr(self.tombstone, "blob_erased", None)
        if erased is not None and erased(sha256):
            self.counts.tombstoned_blobs += 1
            return False
        if self.conn.execute("SELECT 1 FROM attachments WHERE sha256 = ?",
                             (sha256,)).fetchone():
            self.counts.blobs_known += 1
            return False
        idx = stored = 0
        while True:
            part = content.read(ATTACHMENT_CHUNK)
            if not part and idx:
                break
            packed = self._cctx.compress(part)
            self.conn.execute("INSERT INTO attachment_chunks (sha256, idx, data) "
                              "VALUES (?, ?, ?)", (sha256, idx, packed))
            idx += 1
            stored += len(packed)
            if not part:
                break
        self.conn.execute("INSERT INTO attachments (sha256, size, chunks, stored_bytes, "
                          "first_seen_at) VALUES (?, ?, ?, ?, ?)",
                          (sha256, size, idx, stored, self.now))
        self.counts.blobs_new += 1
        return True


def _last_activity(conv: dict[str, Any], last_at: str | None) -> str | None:
    """What retention counts from (``conversations.last_at``): the latest time given."""
    return _latest(conv.get("started_at"), conv.get("ended_at"), conv.get("updated_at"),
                   last_at)


def _message_text(m: dict[str, Any]) -> str:
    """What a message says: its text, plus any attachment's alternative text."""
    extra = [a["text"] for a in m.get("attachments") or ()
             if isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"]]
    return "\n".join([m["text"], *extra]) if extra else m["text"]
