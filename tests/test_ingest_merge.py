"""A conversation exported again with fewer messages keeps the ones the vault already held.

v1 holds m1..m3, v2 (a later export that cut the history) m2..m4: the store
holds m1..m4, whichever bundle arrives first, and everything that reads the
store (subject find, search, restore, drill, rebuild) sees them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from conftest import Pair
from vault import bundle, canonical, ingest, records, store
from vault_kit import Chain, consistent, conv, outbox, stick

LEO = "leo.brandt@example.org"  # an agent who wrote only m1, then left the team
OLD = "old.address@example.net"  # written only in m1's text
BLOB = b"%PDF-1.4 delivery note " * 300
SHA = hashlib.sha256(BLOB).hexdigest()
_TEXT = {1: f"Leo here, forwarding: write to {OLD} (see the delivery note)",
         2: "refund for order 4471 please", 3: "checking the order now",
         4: "thanks, refund received"}
_FROM = {1: "p2", 2: "c1", 3: "a1", 4: "c1"}


def version(ids: list[int], status: str) -> dict[str, Any]:
    """The chat as an export holding messages ``ids`` shows it (Leo only while m1 is there)."""
    people = [{"id": "c1", "role": "customer", "name": "Mara Quint",
               "email": "mara.quint@example.org"},
              {"id": "a1", "role": "agent", "name": "Ines Duarte"}]
    if 1 in ids:
        people.append({"id": "p2", "role": "agent", "name": "Leo Brandt", "email": LEO})
    msgs: list[dict[str, Any]] = [{"id": f"m{i}", "at": f"2024-03-14T09:0{i}:00Z",
                                   "from": _FROM[i], "text": _TEXT[i]} for i in ids]
    if 1 in ids:
        msgs[0]["attachments"] = [{"sha256": SHA, "name": "note.pdf", "size": len(BLOB)}]
    return {"conversation_id": "wa1", "started_at": msgs[0]["at"], "status": status,
            "participants": people, "messages": msgs}


V1, V2 = version([1, 2, 3], "open"), version([2, 3, 4], "closed")


def merged() -> bytes:
    """What the store must hold: v2's fields and messages, m1 and Leo kept, v1's start."""
    want = dict(V2, started_at=V1["started_at"])
    want["participants"] = V2["participants"] + [V1["participants"][2]]
    want["messages"] = [V1["messages"][0], *V2["messages"]]
    return records.canonical_record(canonical.loads(canonical.dumps(want)))[0]


def stored(home: Path) -> bytes:
    with store.open_store(home / store.FILE_NAME) as conn:
        consistent(conn)
        (record,) = conn.execute("SELECT record FROM conversations").fetchone()
        return str(record).encode("utf-8")


def ok(cli: Any, *args: Any) -> Any:
    res = cli(*args)
    assert res.code == 0, res.err
    return res


def sealed_apart(pair: Pair, tmp_path: Path, *versions: dict[str, Any]) -> list[Path]:
    """Each version sealed (in sequence order) onto a stick of its own."""
    ch, sticks = Chain(pair, tmp_path / "sealed"), []
    for n, v in enumerate(versions, 1):
        root = stick(tmp_path / f"stick{n}")
        made = ch.seal([v], blobs={SHA: BLOB} if v["messages"][0]["id"] == "m1" else None)
        made.path.rename(outbox(root) / bundle.file_name("web", n))
        sticks.append(root)
    return sticks


def ingest_json(cli: Any, pair: Pair, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = ok(cli, "vault", "ingest", root, "--home", pair.vault_path,
                             "--json").json()
    return out


def everything_sees_m1(cli: Any, pair: Pair, tmp_path: Path) -> None:
    """subject find, search, restore, drill and rebuild all see the kept message."""
    found = ok(cli, "subject", "find", "--email", OLD, "--json", "--home",
               pair.vault_path).json()
    assert [r["conversation_id"] for r in found["results"]] == ["wa1"]
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        assert [h.message_id for h in store.search(conn, "forwarding")] == ["m1"]
        assert b"".join(store.read_attachment(conn, SHA)) == BLOB
    made = ok(cli, "restore", "create", "--home", pair.vault_path, "--to",
              pair.exporter.public_key, "--out", tmp_path / "set", "--source", "web",
              "--json").json()
    ok(cli, "restore", "open", *[p["path"] for p in made["parts"]], "--home",
       pair.exporter_path, "--out", tmp_path / "opened")
    (back,) = (tmp_path / "opened" / "web.jsonl").read_bytes().splitlines()
    assert [m["id"] for m in canonical.loads(back)["messages"]] == ["m1", "m2", "m3", "m4"]
    drill = ok(cli, "drill", "--all", "--home", pair.vault_path, "--json").json()["body"]
    assert drill["passed"] and drill["counts"]["kept_earlier"] == 1
    assert drill["counts"]["superseded"] == 1
    ok(cli, "vault", "rebuild", "--home", pair.vault_path, "--into", tmp_path / "rebuilt")
    assert ok(cli, "vault", "digest", "--home", tmp_path / "rebuilt").out == \
        ok(cli, "vault", "digest", "--home", pair.vault_path).out
    assert stored(tmp_path / "rebuilt") == stored(pair.vault_path)


def test_shorter_export_keeps_the_messages_it_lost(pair: Pair, tmp_path: Path,
                                                  cli: Any) -> None:
    one, two = sealed_apart(pair, tmp_path, V1, V2)
    assert ingest_json(cli, pair, one)["summary"]["merged"] == 0

    said = ok(cli, "vault", "ingest", two, "--home", pair.vault_path)

    assert "1 merged (earlier messages kept)" in said.out
    assert "1 merged with earlier messages kept" in said.out + said.err
    assert stored(pair.vault_path) == merged()
    again = ingest_json(cli, pair, two)  # a replay
    assert again["summary"]["duplicate"] == 1 and again["summary"]["merged"] == 0
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        (counts,) = conn.execute("SELECT counts FROM bundles WHERE sequence = 2").fetchone()
    assert canonical.loads(counts)["merged"] == 1 and canonical.loads(counts)["updated"] == 0
    assert stored(pair.vault_path) == merged()
    everything_sees_m1(cli, pair, tmp_path)


def test_older_export_arriving_late_adds_what_only_it_holds(pair: Pair, tmp_path: Path,
                                                            cli: Any) -> None:
    one, two = sealed_apart(pair, tmp_path, V1, V2)
    first = ingest_json(cli, pair, two)  # #2 first: a gap, #1 still on its way
    assert "gap" in (first["outcomes"][0]["reason"] or "")

    late = ingest_json(cli, pair, one)

    counts = late["outcomes"][0]["counts"]
    assert (counts["merged"], counts["older"]) == (1, 0)
    assert stored(pair.vault_path) == merged()
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        assert conn.execute("SELECT bundle_sequence FROM conversations").fetchone()[0] == 2
    everything_sees_m1(cli, pair, tmp_path)


def test_grown_conversation_is_still_stored_as_sent(pair: Pair, tmp_path: Path,
                                                   cli: Any) -> None:
    grown = version([1, 2, 3, 4], "closed")
    one, two = sealed_apart(pair, tmp_path, V1, grown)
    ingest_json(cli, pair, one)

    counts = ingest_json(cli, pair, two)["outcomes"][0]["counts"]

    assert (counts["updated"], counts["merged"]) == (1, 0)
    assert stored(pair.vault_path) == records.canonical_record(
        canonical.loads(canonical.dumps(grown)))[0]
    drill = ok(cli, "drill", "--all", "--home", pair.vault_path, "--json").json()["body"]
    assert drill["passed"] and drill["counts"]["kept_earlier"] == 0


def holds_leo(home: Path) -> bool:
    with store.open_store(home / store.FILE_NAME) as conn:
        return bool(conn.execute("SELECT count(*) FROM identifiers WHERE value = ?",
                                 (LEO,)).fetchone()[0]
                    + conn.execute("SELECT count(*) FROM conversations WHERE record LIKE ?",
                                   (f"%{LEO}%",)).fetchone()[0])


def test_erased_writer_of_a_kept_message_stays_erased(pair: Pair, tmp_path: Path,
                                                     cli: Any) -> None:
    """Leo wrote only m1 (not as the customer: his erasure redacts the chat, it does not
    remove it); erased after v1, he is not brought back by v2, by v1 exported again
    later (#3), by replays or by a rebuild, while m1 itself stays (redacted)."""
    one, two, three = sealed_apart(pair, tmp_path, V1, V2, V1)
    ingest_json(cli, pair, one)
    assert holds_leo(pair.vault_path)
    done = ok(cli, "erase", "--email", LEO, "--reason", "Art. 17 request", "--yes", "--json",
              "--home", pair.vault_path).json()
    assert done["status"] == "done" and not holds_leo(pair.vault_path)

    got = ingest_json(cli, pair, two)
    assert got["summary"]["merged"] == 1, str(got["outcomes"][0]["counts"])
    assert ingest_json(cli, pair, three)["summary"]["ingested"] == 1
    for root in (one, two, three):
        assert ingest_json(cli, pair, root)["summary"]["duplicate"] == 1

    assert not holds_leo(pair.vault_path)
    record = canonical.loads(stored(pair.vault_path))
    assert [m["id"] for m in record["messages"]] == ["m1", "m2", "m3", "m4"]
    assert "[erased" in canonical.dumps(record).decode()
    drill = ok(cli, "drill", "--all", "--home", pair.vault_path, "--json").json()["body"]
    assert drill["passed"], drill["mismatches"]
    ok(cli, "vault", "rebuild", "--home", pair.vault_path, "--into", tmp_path / "rebuilt")
    assert not holds_leo(tmp_path / "rebuilt")
    assert stored(tmp_path / "rebuilt") == stored(pair.vault_path)


def test_drill_still_finds_a_lost_or_changed_message(pair: Pair, tmp_path: Path,
                                                     cli: Any) -> None:
    one, two = sealed_apart(pair, tmp_path, V1, V2)
    ingest_json(cli, pair, one)
    ingest_json(cli, pair, two)
    record = canonical.loads(stored(pair.vault_path))
    for change, check in (("lose m1", "message_missing_from_store"),
                          ("edit m4", "store_differs_from_archive")):
        damaged = dict(record)
        if change == "lose m1":
            damaged["messages"] = record["messages"][1:]
        else:
            damaged["messages"] = [*record["messages"][:3],
                                   dict(record["messages"][3], text="forged")]
        data = canonical.dumps(damaged)
        with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
            conn.execute("UPDATE conversations SET record = ?, content_sha256 = ?",
                         (data.decode(), records.content_hash(data)))
        res = cli("drill", "--all", "--home", pair.vault_path, "--json")
        body = res.json()["body"]
        assert res.code != 0 and not body["passed"], change
        assert [m["check"] for m in body["mismatches"]][:1] == [check], change
