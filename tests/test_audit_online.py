"""The online side as a witness of the vault's audit log.

Receipts and answers state the log's position (chain, entries, head); the
exporter keeps the positions of the receipts it accepts and ``export status``
judges them by the time each receipt was signed. Receipts are forged here
with the vault's real key (``receipts.make``) to state chosen positions and
times; the first tests check what the real vault writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from export_kit import Site, make_site
from vault import audit, media, receipts, signed, store
from vault.audit import Position
from vault.exportstate import ExportState

OLD = "a" * 64      # a chain (the hash of its first entry)
REBUILT = "b" * 64  # the chain a rebuild starts
BUNDLE = "web-00000001.cvb"


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _day(n: int) -> str:
    return f"2024-05-{n:02d}T10:00:00Z"


@pytest.fixture
def site(tmp_path: Path, cli: Any) -> Site:
    s = make_site(tmp_path)
    assert cli("export", "run", *s.args()).code == 0
    return s


def _forge(site: Site, *, at: str, entries: int, chain: str = OLD, head: str | None = None,
           file: str | None = None, legacy: bool = False) -> Path:
    """A receipt for the first bundle, signed by the vault at ``at`` stating a position.

    ``legacy``: as an older vault signed them, with the head hash alone.
    """
    vault = site.vaults[0]
    with site.state() as state:
        row = state.bundle_by_name(BUNDLE)
    assert row is not None
    pos = Position(chain, entries, head or _h(f"{chain}:{entries}"))
    doc = receipts.make(vault.identity(), bundle_file=BUNDLE, bundle_sha256=row.sha256,
                        status="ingested", meta={"source": "web", "sequence": 1},
                        audit=None if legacy else pos)
    extra = {"audit_head": pos.head} if legacy else {}
    doc = signed.sign({**doc["body"], **extra, "at": at}, vault.identity())
    folder = media.folder(site.stick, media.RECEIPTS, create=True)
    path = folder / (file or f"forged-{entries}-{at[:10]}{receipts.SUFFIX}")
    path.write_bytes(signed.dumps(doc))
    return path


def _read(cli: Any, site: Site, *trips: dict[str, Any]) -> dict[str, Any]:
    """Each receipt on its own stick trip: forged (:func:`_forge`), then ``export receipts``."""
    out: dict[str, Any] = {}
    for kw in trips:
        _forge(site, **kw)
        res = cli("export", "receipts", *site.args(), "--json")
        assert res.code == 0, res.err
        out = res.json()
    return out


def _status(cli: Any, site: Site) -> tuple[int, dict[str, Any]]:
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    return res.code, res.json()


def _findings(cli: Any, site: Site) -> list[dict[str, Any]]:
    return list(_status(cli, site)[1]["audit"]["findings"])


# -- what the vault states --------------------------------------------------------------

def test_receipts_from_the_real_ingest_state_the_position(site: Site, cli: Any) -> None:
    from vault import ingest

    vault = site.vaults[0]
    [outcome] = ingest.ingest_media(vault.path, site.stick)
    body = outcome.receipt["body"]
    conn = store.open_store(vault.path / store.FILE_NAME)
    try:
        entry1 = conn.execute("SELECT hash FROM audit_log WHERE seq = 1").fetchone()[0]
        at_head = conn.execute("SELECT hash, action FROM audit_log WHERE seq = ?",
                               (body["audit_entries"],)).fetchone()
    finally:
        conn.close()
    # the head is the ingest's own entry: seq and hash of one entry of this chain
    assert body["audit_chain"] == entry1 and at_head == (body["audit_head"], "ingest")

    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 0, res.err
    with site.state() as state:
        seen = state.audit_seen()
    assert [(c, n, h) for _, c, n, h, _, _ in seen] == [
        (entry1, body["audit_entries"], body["audit_head"])]
    assert _status(cli, site)[0] == 0


def test_a_real_rebuild_shows_online_as_a_new_chain(site: Site, cli: Any,
                                                   tmp_path: Path) -> None:
    from export_kit import conv, write_jsonl
    from vault import ingest

    vault = site.vaults[0]
    ingest.ingest_media(vault.path, site.stick)
    assert cli("export", "run", *site.args()).code == 0
    rebuilt = tmp_path / "rebuilt"
    res = cli("vault", "rebuild", "--home", vault.path, "--into", rebuilt)
    assert res.code == 0, res.err
    write_jsonl(site.source, [conv("c9", ["a new conversation"])])
    assert cli("export", "run", *site.args()).code == 0

    [outcome] = ingest.ingest_media(rebuilt, site.stick)
    res = cli("export", "run", *site.args(), "--json")

    assert res.code == 0, res.err
    assert [f["kind"] for f in res.json()["receipts"]["audit_findings"]] == ["new_chain"]
    code, status = _status(cli, site)
    assert code == 1, status["alerts"]
    [f] = status["audit"]["findings"]
    assert f["kind"] == "new_chain"
    assert f["chain"] == outcome.receipt["body"]["audit_chain"] != f["earlier"]["chain"]


def test_an_empty_log_has_position_zero(tmp_path: Path) -> None:
    conn = store.open_store(tmp_path / store.FILE_NAME, create=True)
    try:
        assert audit.position(conn) == Position(audit.GENESIS, 0, audit.GENESIS)
        audit.append(conn, "test")
        audit.append(conn, "test")
        pos = audit.position(conn)
        assert pos.entries == 2 and pos.head == audit.head(conn) and pos.chain != pos.head
        assert Position.stated(pos.fields()) == pos
        assert Position.stated({"audit_head": pos.head}) is None  # an older vault's receipt
    finally:
        conn.close()


def test_answers_state_the_position(tmp_path: Path) -> None:
    from requests_kit import world

    w = world(tmp_path)
    w.ask(w.it, "restore", source="sample")
    [got] = w.answer()
    stated = Position.stated(w.answer_bodies()[got.answer_file])
    assert stated is not None
    with w.vault.conn() as conn:
        entry1 = conn.execute("SELECT hash FROM audit_log WHERE seq = 1").fetchone()[0]
        at_head = conn.execute("SELECT hash, action FROM audit_log WHERE seq = ?",
                               (stated.entries,)).fetchone()
    # signed right after its own audit entry
    assert stated.chain == entry1 and at_head == (stated.head, "request.answer")


# -- judging what receipts state --------------------------------------------------------

def test_a_rewritten_tail_is_critical(site: Site, cli: Any) -> None:
    _read(cli, site, {"at": _day(1), "entries": 10}, {"at": _day(2), "entries": 12})
    assert _status(cli, site)[0] == 0

    # as many entries as before, another head: the tail was rewritten
    out = _read(cli, site, {"at": _day(3), "entries": 12, "head": _h("forged 12")})

    [f] = out["receipts"]["audit_findings"]
    assert (f["kind"], f["level"]) == ("rewritten", "CRITICAL")
    assert f["earlier"]["receipt_at"] == _day(2) and f["later"]["receipt_at"] == _day(3)
    code, status = _status(cli, site)
    assert code == 2 and status["status"] == "CRITICAL"
    [alert] = [a for a in status["alerts"] if a["level"] == "CRITICAL"]
    assert "its audit log was rewritten" in alert["message"]
    assert "chatvault audit verify" in alert["message"]
    assert f"chatvault export resolve {f['id']}" in alert["message"]


def test_a_cut_tail_is_critical_whichever_receipt_arrives_first(site: Site, cli: Any,
                                                                tmp_path: Path) -> None:
    _read(cli, site, {"at": _day(1), "entries": 20})
    _read(cli, site, {"at": _day(2), "entries": 15})  # signed later, fewer entries

    [f] = _findings(cli, site)
    assert (f["kind"], f["earlier"]["entries"], f["later"]["entries"]) == ("cut", 20, 15)
    code, status = _status(cli, site)
    assert code == 2 and "the newest entries were cut off" in status["alerts"][0]["message"]
    text = cli("export", "receipts", *site.args())
    assert text.code == 0 and "AUDIT CRITICAL" in text.err  # every run says so too
    prom = tmp_path / "export.prom"
    assert cli("export", "status", "--home", site.exporter.path, "--prometheus",
               prom).code == 2
    assert "chatvault_export_audit_critical_findings 1" in prom.read_text()

    # the other way round on a second exporter: the later receipt comes back first
    other = make_site(tmp_path / "other")
    assert cli("export", "run", *other.args()).code == 0
    _read(cli, other, {"at": _day(2), "entries": 15})
    assert _status(cli, other)[0] == 0
    _read(cli, other, {"at": _day(1), "entries": 20})
    assert [f["kind"] for f in _findings(cli, other)] == ["cut"]


def test_receipts_read_out_of_order_raise_no_alarm(site: Site, cli: Any) -> None:
    # three sticks: signed on days 1, 2, 3, brought back in the order 3, 1, 2
    _read(cli, site, {"at": _day(3), "entries": 15}, {"at": _day(1), "entries": 10},
          {"at": _day(2), "entries": 12})
    # and a stick with the receipt of day 3 again (replayed, byte for byte the same)
    _read(cli, site, {"at": _day(3), "entries": 15, "file": "again.receipt.json"})

    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    assert status["audit"]["findings"] == []
    [latest] = status["audit"]["vaults"]
    assert (latest["entries"], latest["receipt_at"]) == (15, _day(3))
    with site.state() as state:
        assert len(state.audit_seen()) == 3


def test_a_rebuilds_new_chain_is_a_warning(site: Site, cli: Any) -> None:
    _read(cli, site, {"at": _day(1), "entries": 40}, {"at": _day(2), "entries": 42})
    # after 'vault rebuild' the entries restart and the chain id changes
    _read(cli, site, {"at": _day(3), "entries": 3, "chain": REBUILT},
          {"at": _day(4), "entries": 5, "chain": REBUILT})

    code, status = _status(cli, site)
    assert code == 1, status["alerts"]
    [f] = status["audit"]["findings"]
    assert (f["kind"], f["level"], f["chain"]) == ("new_chain", "WARNING", REBUILT)
    assert f["later"]["receipt_at"] == _day(3) and f["earlier"]["entries"] == 42
    [alert] = status["alerts"]
    assert "a rebuild starts one; confirm with the vault's operator" in alert["message"]

    # a receipt of the old chain signed before the rebuild, brought back late: no more
    _read(cli, site, {"at": "2024-05-01T12:00:00Z", "entries": 41})
    assert [f["kind"] for f in _findings(cli, site)] == ["new_chain"]


def test_receipts_without_a_position_are_accepted_and_not_judged(site: Site,
                                                                 cli: Any) -> None:
    _read(cli, site, {"at": _day(1), "entries": 10})
    # an older vault's receipt (the head hash alone), signed later: were its missing
    # fields taken for an empty log, it would look like a cut
    out = _read(cli, site, {"at": _day(2), "entries": 3, "legacy": True})

    assert [o["result"] for o in out["receipts"]["receipts"]] == ["acknowledged"]
    code, status = _status(cli, site)
    assert code == 0 and status["audit"]["findings"] == [], status["alerts"]
    with site.state() as state:
        assert [n for _, _, n, _, _, _ in state.audit_seen()] == [10]
        assert state.acks()[0].receipt_at == _day(2)


def test_a_finding_is_dismissed_with_a_note(site: Site, cli: Any) -> None:
    _read(cli, site, {"at": _day(1), "entries": 20}, {"at": _day(2), "entries": 15})
    [f] = _findings(cli, site)

    no_note = cli("export", "resolve", f["id"], "--home", site.exporter.path)
    assert no_note.code == 2 and "--note" in no_note.err
    assert cli("export", "resolve", "audit-0000000000", "--home", site.exporter.path,
               "--note", "x").code == 2
    res = cli("export", "resolve", f["id"], "--home", site.exporter.path, "--note",
              "store restored from the 1 May backup, confirmed with the vault's operator",
              "--json")

    assert res.code == 0, res.err
    assert [r["id"] for r in json.loads(res.out)["audit_resolved"]] == [f["id"]]
    code, status = _status(cli, site)
    assert code == 0, status["alerts"]
    [done] = status["audit"]["resolved"]
    assert done["finding"] == f["id"] and done["note"].startswith("store restored")
    assert done["operator"]

    # more receipts of that same event raise nothing: one signed inside the span,
    # one after it still below the old count, one that regrew over old numbers
    _read(cli, site, {"at": "2024-05-01T18:00:00Z", "entries": 17},
          {"at": _day(3), "entries": 18}, {"at": _day(4), "entries": 20, "head": _h("new 20")})
    assert _status(cli, site)[0] == 0
    # a later cut is a new finding
    _read(cli, site, {"at": _day(5), "entries": 30}, {"at": _day(6), "entries": 25})
    code, status = _status(cli, site)
    assert code == 2
    [again] = status["audit"]["findings"]
    assert again["kind"] == "cut" and again["later"]["receipt_at"] == _day(6)


def test_a_new_chain_is_dismissed_for_good(site: Site, cli: Any) -> None:
    _read(cli, site, {"at": _day(1), "entries": 40}, {"at": _day(3), "entries": 2,
                                                      "chain": REBUILT})
    assert _status(cli, site)[0] == 1
    res = cli("export", "resolve", "audit", "--home", site.exporter.path, "--note",
              "rebuilt on 3 May after the disk failure (ticket 77)")
    assert res.code == 0, res.err
    assert "(new_chain)" in res.err
    _read(cli, site, {"at": _day(4), "entries": 6, "chain": REBUILT})
    assert _status(cli, site)[0] == 0
    with ExportState.open(site.exporter.path) as state:
        assert [r["kind"] for r in state.audit_resolutions()] == ["new_chain"]
