"""Legal holds: what must be kept whatever erasure or retention would do.

A hold has a name, a reason and a scope built from any of: a subject (its
identifiers, stored as keyed hashes), a source, one conversation, a time
window (``--since``/``--until``); a conversation is held when it meets every
part of the scope. While a hold is active, erasure refuses (exit 4, naming
the holds) and retention skips what it covers. ``hold release NAME`` ends
it; the row stays, with who released it and when, for the record.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable

from vault import audit, statehook, store, timestamps, tombstones
from vault.errors import UsageError
from vault.subjects import Subject, VaultHandle, conversation_identifiers

_CHUNK = 500


@dataclass(frozen=True)
class Hold:
    id: int
    name: str
    scope: dict[str, Any]
    reason: str
    created_at: str
    created_by: str
    released_at: str | None
    released_by: str | None

    def describe(self) -> str:
        s = self.scope
        parts = []
        if s.get("subject"):
            parts.append(f"a subject ({len(s['subject'])} identifier hashes)")
        if s.get("source"):
            parts.append(f"source {s['source']}")
        if s.get("conversation"):
            parts.append(f"conversation {s['conversation']}")
        if s.get("since") or s.get("until"):
            parts.append(f"{s.get('since') or '…'} to {s.get('until') or '…'}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["scope"] = {k: v for k, v in self.scope.items() if k != "subject"}
        out["scope"]["subject_identifiers"] = len(self.scope.get("subject") or [])
        out["describe"] = self.describe()
        return out


def _row(row: tuple[Any, ...]) -> Hold:
    return Hold(row[0], row[1], json.loads(row[2]), row[3] or "", row[4], row[5] or "",
                row[6], row[7])


_COLUMNS = "id, name, scope, reason, created_at, created_by, released_at, released_by"


def add(v: VaultHandle, name: str, reason: str, *, subject: Subject | None = None,
        source: str | None = None, conversation: str | None = None,
        since: str | None = None, until: str | None = None) -> Hold:
    """Place a hold; UsageError when the name is taken or the scope is empty."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise UsageError("a hold name is one word of at most 100 characters")
    if not reason.strip():
        raise UsageError("--reason is required: say why the data must be kept")
    scope: dict[str, Any] = {}
    if subject is not None:
        if not subject.exact():
            raise UsageError("a subject hold needs an e-mail, phone, --id or --customer-id")
        pairs = subject.exact() + [("phone_unparsed", d) for d in subject.unparsed_forms()]
        scope["subject"] = sorted([k, v.key.hash(tombstones.PURPOSE_HOLD, k, val)]
                                  for k, val in pairs)
    _check_scope(v, source, since, until)
    if conversation:
        _require_conversation(v, conversation, source)
    for k, val in (("source", source), ("conversation", conversation), ("since", since),
                   ("until", until)):
        if val:
            scope[k] = val
    if not scope:
        raise UsageError("a hold needs a scope: --email/--phone (a subject), --source, "
                         "--conversation or --since/--until")
    now, who = timestamps.now_utc(), audit.operator()
    with store.transaction(v.conn):
        if v.conn.execute("SELECT 1 FROM legal_holds WHERE name = ? AND released_at IS NULL",
                          (name,)).fetchone():
            raise UsageError(f"a hold named {name!r} is already active")
        cur = v.conn.execute("INSERT INTO legal_holds (name, scope, reason, created_at, "
                             "created_by) VALUES (?, ?, ?, ?, ?)",
                             (name, json.dumps(scope, sort_keys=True), reason, now, who))
        audit.append(v.conn, "hold.add", target=f"hold:{name}", purpose=reason,
                     detail={k: val for k, val in scope.items() if k != "subject"}
                     | {"subject_identifiers": len(scope.get("subject") or [])})
    statehook.changed(v.home, "hold")
    return Hold(int(cur.lastrowid or 0), name, scope, reason, now, who, None, None)


def _require_conversation(v: VaultHandle, given: str, source: str | None) -> None:
    """A conversation hold must name a conversation held (``ID`` or ``SOURCE/ID``)."""
    sources = [source] if source else [n for (n,) in v.conn.execute("SELECT name FROM sources")]
    keys = [(s, given) for s in sources]
    head, _, rest = given.partition("/")
    if rest and (source is None or head == source):
        keys.append((head, rest))
    for key in keys:
        if v.conn.execute("SELECT 1 FROM conversations WHERE source = ? AND conversation_id = ?",
                          key).fetchone():
            return
    raise UsageError(f"no conversation {given!r} is held"
                     + (f" in source {source!r}" if source else "")
                     + " (give ID or SOURCE/ID as 'subject find' lists them): the hold would "
                     "cover nothing")


def _check_scope(v: VaultHandle, source: str | None, since: str | None,
                 until: str | None) -> None:
    """A hold that could never cover anything is a typo, not a hold: refused."""
    if since and until and timestamps.parse(since) > timestamps.parse(until):
        raise UsageError(f"--since {since} is after --until {until}: the hold would cover "
                         "nothing")
    if source:
        v.require_source(source, "the hold would cover nothing")


def release(v: VaultHandle, name: str, reason: str | None = None) -> Hold:
    with store.transaction(v.conn):
        row = v.conn.execute(f"SELECT {_COLUMNS} FROM legal_holds WHERE name = ? AND "
                             "released_at IS NULL", (name,)).fetchone()
        if row is None:
            raise UsageError(f"no active hold named {name!r} (see 'chatvault hold list')")
        now, who = timestamps.now_utc(), audit.operator()
        v.conn.execute("UPDATE legal_holds SET released_at = ?, released_by = ?, "
                       "release_reason = ? WHERE id = ?", (now, who, reason, row[0]))
        audit.append(v.conn, "hold.release", target=f"hold:{name}", purpose=reason)
    statehook.changed(v.home, "hold")
    hold = _row(row)
    return Hold(hold.id, hold.name, hold.scope, hold.reason, hold.created_at,
                hold.created_by, now, who)


def listing(conn: sqlite3.Connection, include_released: bool = False) -> list[Hold]:
    where = "" if include_released else " WHERE released_at IS NULL"
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM legal_holds{where} "
                                          "ORDER BY created_at, id")]


def covering(conn: sqlite3.Connection, key: tombstones.IdentifierKey,
             convs: Iterable[int]) -> dict[int, list[str]]:
    """The names of the active holds covering each of ``convs`` (only those held)."""
    active = listing(conn)
    convs = sorted(set(convs))
    if not active or not convs:
        return {}
    subjects = [h for h in active if h.scope.get("subject")]
    found = conversation_identifiers(conn, convs) if subjects else {}
    out: dict[int, list[str]] = {}
    for i in range(0, len(convs), _CHUNK):
        ids = convs[i:i + _CHUNK]
        for conv, src, cid, started, last in conn.execute(
                f"SELECT id, source, conversation_id, started_at, coalesce(last_at, started_at) "
                f"FROM conversations WHERE id IN ({','.join('?' * len(ids))})", ids):
            hashes = {(k, key.hash(tombstones.PURPOSE_HOLD, k, val))
                      for k, val, _ in found.get(conv, [])} if subjects else set()
            for hold in active:
                if _covers(hold.scope, src, cid, started, last, hashes):
                    out.setdefault(conv, []).append(hold.name)
    return out


def _covers(scope: dict[str, Any], source: str, cid: str, started: str, last: str,
            hashes: set[tuple[str, str]]) -> bool:
    if scope.get("source") and scope["source"] != source:
        return False
    if scope.get("conversation") and scope["conversation"] not in (
            cid, tombstones.conversation_value(source, cid)):
        return False
    if scope.get("since") and last < scope["since"]:
        return False
    if scope.get("until") and started > scope["until"]:
        return False
    if scope.get("subject") and not any(tuple(p) in hashes for p in scope["subject"]):
        return False
    return True
