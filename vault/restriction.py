"""Art. 18 restriction of processing: hide a subject without deleting anything.

``chatvault restrict --email ... --reason TEXT`` records keyed hashes of the
subject's identifiers (never the identifiers) under a reference
(``R-<n>``); ``--lift`` ends it. While a restriction is active:

* ``search`` and ``subject find`` leave out every conversation in which a
  restricted identifier appears (as participant or written in a message)
  and say how many they left out, so "nothing found" is never a false
  "we hold nothing";
* DSAR packages of other people redact the subject where they are
  mentioned (they would be redacted as another customer anyway);
* restore bundles apply :func:`output_filter` (the same decisions as
  tombstones: left out where the subject is the customer, mentions
  redacted as ``[restricted ...]``).

The data itself stays in the store, unchanged: lifting the restriction
brings everything back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from vault import audit, store, timestamps
from vault.errors import UsageError
from vault.identifierkey import PURPOSE_RESTRICTION, IdentifierKey
from vault.subjects import Subject, VaultHandle, conversation_identifiers

# Imported where used: 'subject find' runs hidden() on every lookup and needs neither the
# filter (tombstones brings redaction and phone parsing) nor statehook (logging).
if TYPE_CHECKING:
    from vault import tombstones


def _hash_pairs(subject: Subject) -> list[tuple[str, str]]:
    """The (kind, value) pairs a restriction hashes: exact identifiers and digit forms."""
    pairs = subject.exact()
    pairs += [("phone_unparsed", d) for d in subject.unparsed_forms()]
    return pairs


@dataclass(frozen=True)
class Restriction:
    ref: str
    reason: str
    created_at: str
    created_by: str
    lifted_at: str | None
    identifiers: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def add(v: VaultHandle, subject: Subject, reason: str) -> Restriction:
    """Restrict processing of ``subject``; returns the new restriction."""
    if not reason.strip():
        raise UsageError("--reason is required: say why processing is restricted")
    if not subject.exact():
        raise UsageError("a restriction needs an e-mail, phone, --id or --customer-id "
                         "(a name alone is not precise enough)")
    now, who = timestamps.now_utc(), audit.operator()
    pairs = _hash_pairs(subject)
    with store.transaction(v.conn):
        n = v.conn.execute("SELECT count(DISTINCT ref) FROM restrictions").fetchone()[0]
        ref = f"R-{n + 1:04d}"
        v.conn.executemany(
            "INSERT INTO restrictions (ref, kind, hash, reason, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(ref, k, v.key.hash(PURPOSE_RESTRICTION, k, val), reason, now, who)
             for k, val in pairs])
        audit.append(v.conn, "restrict", target=v.target(subject.exact()), purpose=reason,
                     detail={"ref": ref, "identifiers": len(pairs)})
    from vault import statehook

    statehook.changed(v.home, "restriction")
    return Restriction(ref, reason, now, who, None, len(pairs))


def lift(v: VaultHandle, subject: Subject, reason: str) -> list[str]:
    """End every active restriction that names one of ``subject``'s identifiers."""
    if not reason.strip():
        raise UsageError("--reason is required: say why the restriction ends")
    hashes = [(k, v.key.hash(PURPOSE_RESTRICTION, k, val))
              for k, val in _hash_pairs(subject)]
    with store.transaction(v.conn):
        refs = sorted({r for k, h in hashes for (r,) in v.conn.execute(
            "SELECT ref FROM restrictions WHERE kind = ? AND hash = ? AND lifted_at IS NULL",
            (k, h))})
        if not refs:
            raise UsageError("no active restriction names these identifiers")
        now, who = timestamps.now_utc(), audit.operator()
        for ref in refs:
            v.conn.execute("UPDATE restrictions SET lifted_at = ?, lifted_by = ? "
                           "WHERE ref = ? AND lifted_at IS NULL", (now, who, ref))
        audit.append(v.conn, "restrict.lift", target=v.target(subject.exact()),
                     purpose=reason, detail={"refs": refs})
    from vault import statehook

    statehook.changed(v.home, "restriction")
    return refs


def listing(conn: sqlite3.Connection, include_lifted: bool = False) -> list[Restriction]:
    sql = ("SELECT ref, reason, created_at, created_by, lifted_at, count(*) FROM restrictions "
           + ("" if include_lifted else "WHERE lifted_at IS NULL ")
           + "GROUP BY ref ORDER BY ref")
    return [Restriction(*row) for row in conn.execute(sql)]


def active_hashes(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {(k, h) for k, h in conn.execute(
        "SELECT kind, hash FROM restrictions WHERE lifted_at IS NULL")}


def hidden(conn: sqlite3.Connection, key: IdentifierKey,
           convs: Iterable[int]) -> set[int]:
    """The conversations (rowids) among ``convs`` in which a restricted subject appears."""
    active = active_hashes(conn)
    if not active:
        return set()
    out = set()
    for conv, found in conversation_identifiers(conn, convs).items():
        if any((k, key.hash(PURPOSE_RESTRICTION, k, val)) in active
               for k, val, _ in found):
            out.add(conv)
    return out


def output_filter(conn: sqlite3.Connection, key: IdentifierKey, source: str,
                  region: str | None) -> tombstones.Filter:
    """A :class:`vault.tombstones.Filter` for restrictions, for restore and exports."""
    from vault import tombstones

    f = tombstones.Filter(None, key, source, region, purpose=PURPOSE_RESTRICTION,
                          hashes=active_hashes(conn))
    f.label = "restricted"
    return f


def home_filter(home: Path, conn: sqlite3.Connection, source: str,
                region: str | None) -> tombstones.Filter:
    """:func:`output_filter` for a vault home (loads the identifier key)."""
    from vault.identifierkey import load_key

    return output_filter(conn, load_key(home, conn), source, region)
