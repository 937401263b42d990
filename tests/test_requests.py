"""Requests across the air gap: each kind asked online, answered by the vault, collected.

The stick is a folder here; ``test_requests_media.py`` does it once on a
real exFAT stick through udev and the daemon. Refusals are in
``test_requests_refusals.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import run_cli
from requests_kit import ANA, JONAS, MARA, World, world
from vault import (answers, home, holds, media, records, requestparams, requests, subjects,
                   timestamps)
from vault.errors import MediaFull, UsageError


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def _stored(w: World) -> dict[tuple[str, str], str]:
    with w.vault.conn() as conn:
        return {(s, c): h for s, c, h in conn.execute(
            "SELECT source, conversation_id, content_sha256 FROM conversations")}


def _found(w: World, email: str) -> int:
    with subjects.open_vault(w.vlt.path) as v:
        return len(subjects.find(v.conn, subjects.Subject(emails=[email])))


def _everything_on(stick: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(stick.rglob("*")) if p.is_file())


# -- each kind, round trip ------------------------------------------------------------

def test_restore_request_round_trip(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.it, "restore", source="sample")
    held = _stored(w)

    [got] = w.answer()
    assert (got.status, got.reason, got.action) == ("done", None, "restore")
    body = w.answer_bodies()[got.answer_file]
    assert body["request_id"] == asked["request_id"]
    assert body["request_digest"] == asked["digest"]
    assert body["counts"]["conversations"] == len(held) == 6
    [part] = body["files"]
    assert (w.answers_dir() / part["file"]).is_file()

    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    [item] = rep.items
    assert item.result == "opened" and rep.exit_code == 0
    lines = (Path(item.out) / "sample.jsonl").read_bytes().splitlines()
    restored = {("sample", json.loads(x)["conversation_id"]): records.content_hash(x)
                for x in lines}
    assert restored == held, "the restore set holds what the vault holds, byte for byte"
    # collected: answer, its part and the answered request are gone from the stick
    assert not list(w.answers_dir().iterdir()) and not list(w.requests_dir().iterdir())
    assert answers.status(w.it.path)["requests"] == []
    with w.vault.conn() as conn:
        (purpose,) = conn.execute("SELECT purpose FROM audit_log WHERE action = "
                                  "'restore.create'").fetchone()
    assert purpose == f"request {asked['request_id']}"
    assert [e["detail"]["status"] for e in w.audit("request.answer")] == ["done"]


def test_dsar_request_round_trip_and_nothing_personal_in_clear(w: World,
                                                               tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02",
                  note="letter of 2 May")
    assert JONAS.encode() not in _everything_on(w.stick), "the request's parameters are sealed"

    [got] = w.answer()
    assert got.status == "done", got.message
    body = w.answer_bodies()[got.answer_file]
    case_id = body["case_id"]
    assert case_id == "DSAR-2024-0001" and body["counts"]["conversations"] == 1
    assert JONAS.encode() not in _everything_on(w.stick), "the package is sealed"
    with w.vault.conn() as conn:
        note, exported = conn.execute("SELECT note, exported_at FROM dsar_cases WHERE id = ?",
                                      (case_id,)).fetchone()
    assert note == f"request {asked['request_id']}: letter of 2 May" and exported
    assert list((w.vlt.path / "staging").iterdir()) == [], "no plaintext left in staging"

    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    [item] = rep.items
    assert item.result == "opened"
    data = json.loads((Path(item.out) / "data.json").read_text())
    assert data["subject"]["emails"] == [JONAS]
    assert [c["conversation_id"] for c in data["conversations"]] == ["web-1002"]
    manifest = json.loads((Path(item.out) / "manifest.json").read_text())
    assert all((Path(item.out) / f["path"]).is_file() for f in manifest["files"])
    assert answers.status(w.dpo.path)["requests"] == []


def test_erase_request_round_trip(w: World, tmp_path: Path) -> None:
    assert _found(w, ANA) == 1
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked by letter")

    [got] = w.answer()
    assert got.status == "done", got.message
    assert _found(w, ANA) == 0
    body = w.answer_bodies()[got.answer_file]
    assert body["counts"]["conversations_removed"] == 1 and body["erasure_id"] == "E-0001"
    with w.vault.conn() as conn:
        who, status, why = conn.execute("SELECT requested_by, status, reason FROM erasures"
                                        ).fetchone()
    assert (who, status) == (f"request:{w.dpo.public().fingerprint}", "done")
    assert why == f"asked by letter (request {asked['request_id']})"

    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.status) for i in rep.items] == [("recorded", "done")]
    entry = answers.load_state(w.dpo.path)["requests"][asked["request_id"]]
    [(vault_fp, ans)] = entry["answers"].items()
    assert vault_fp == w.vlt.public().fingerprint and ans["erasure_id"] == "E-0001"
    assert (w.dpo.path / "state" / "answers" / got.answer_file).is_file()


def test_cli_round_trip_with_vault_ingest(w: World, tmp_path: Path) -> None:
    s = w.stick
    r1 = run_cli("request", "restore", "--media", s, "--source", "sample", "--since",
                 "2024-06-01", "--home", w.it.path, "--json")
    assert r1.code == 0, r1.err
    r2 = run_cli("request", "dsar", "--media", s, "--email", "Jonas.Weber@example.NET",
                 "--received", "2024-05-02", "--home", w.dpo.path)
    assert r2.code == 0, r2.err
    assert Path(r2.out.strip()).parent == w.requests_dir()
    waiting = run_cli("request", "status", "--home", w.dpo.path, "--json")
    assert waiting.code == 0 and [r["state"] for r in waiting.json()["requests"]] == ["waiting"]

    ingested = run_cli("vault", "ingest", s, "--home", w.vlt.path, "--json")  # no bundles
    assert ingested.code == 0, ingested.err
    got = {a["action"]: a for a in ingested.json()["answers"]}
    assert got["restore"]["status"] == got["dsar"]["status"] == "done"

    out = tmp_path / "collected"
    it = run_cli("request", "collect", "--media", s, "--out", out, "--home", w.it.path,
                 "--json", "--format", "native")
    assert it.code == 0, it.err
    opened = [a for a in it.json()["answers"] if a["result"] == "opened"]
    assert [a["action"] for a in opened] == ["restore"]
    since_june = {json.loads(x)["conversation_id"] for x in
                  (Path(opened[0]["out"]) / "sample.jsonl").read_text().splitlines()}
    assert since_june == {"web-1004", "web-1005", "web-1006"}
    dpo = run_cli("request", "collect", "--media", s, "--out", out, "--home", w.dpo.path)
    assert dpo.code == 0 and "opened" in dpo.out and "dsar" in dpo.out
    done = run_cli("request", "status", "--home", w.dpo.path)
    assert done.code == 0 and "nothing waiting" in done.err
    assert not list(w.requests_dir().iterdir())


def test_a_restore_window_that_ends_before_it_starts_is_refused_online(w: World) -> None:
    """As 'restore create' refuses it; the vault refused it only a trip later."""
    r = run_cli("request", "restore", "--media", w.stick, "--source", "sample", "--since",
                "2024-06-01", "--until", "2024-05-01", "--home", w.it.path)
    assert r.code == 2 and "--since 2024-06-01 is after --until 2024-05-01" in r.err
    assert not w.requests_dir().is_dir() or not list(w.requests_dir().iterdir())
    same_day = run_cli("request", "restore", "--media", w.stick, "--source", "sample",
                       "--since", "2024-06-01", "--until", "2024-06-01", "--home", w.it.path)
    assert same_day.code == 0, same_day.err


@pytest.mark.parametrize("args,said", [
    (("dsar", "--email", "a@example.org", "--received", "2999-01-01"),
     "the received date is in the future"),
    (("erase", "--email", "a@example.org", "--reason", "letter from a@example.org"),
     "--reason holds an e-mail address or phone number")])
def test_what_the_vault_would_refuse_as_malformed_is_refused_online(w: World, args: tuple,
                                                                    said: str) -> None:
    r = run_cli("request", *args, "--media", w.stick, "--home", w.dpo.path)
    assert r.code == 2 and said in r.err
    assert not w.requests_dir().is_dir() or not list(w.requests_dir().iterdir())


def test_a_request_no_answer_will_settle_can_be_resolved(w: World) -> None:
    """A stick lost on the way: the expired request warned for ever; resolve ends that."""
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    later = datetime.now(timestamps.UTC) + timedelta(days=30)
    assert answers.status(w.dpo.path, now=later)["exit_code"] == 1
    nope = run_cli("request", "resolve", asked["request_id"][:16], "--note", " ",
                   "--home", w.dpo.path)
    assert nope.code == 2 and "--note" in nope.err
    r = run_cli("request", "resolve", asked["request_id"][:16], "--note", "stick lost",
                "--home", w.dpo.path, "--json")
    assert r.code == 0 and r.json()["request_id"] == asked["request_id"], r.err
    rep = answers.status(w.dpo.path, now=later)
    assert (rep["exit_code"], rep["requests"]) == (0, [])
    [row] = answers.status(w.dpo.path, every=True, now=later)["requests"]
    assert row["state"] == "resolved" and row["resolved"]["note"] == "stick lost"
    again = run_cli("request", "resolve", "0123456789abcdef", "--note", "x",
                    "--home", w.dpo.path)
    assert again.code == 2 and "no request '0123456789abcdef'" in again.err


def test_an_answered_request_is_not_resolved_by_hand(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    w.answer()
    answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    r = run_cli("request", "resolve", asked["request_id"], "--note", "x", "--home", w.dpo.path)
    assert r.code == 2 and "answered already" in r.err


def test_answer_sealed_to_another_key_stays_for_its_holder(w: World, tmp_path: Path) -> None:
    desk = home.create("requester", tmp_path / "restore-desk", "restore-desk")
    desk_trust = desk.trust()
    desk_trust.trust(w.vlt.public_key.read_text(), "vault")
    desk_trust.save()
    r = run_cli("request", "restore", "--media", w.stick, "--conversation", "web-1002",
                "--answer-to", desk.public_key, "--home", w.it.path, "--json")
    assert r.code == 0, r.err
    [got] = w.answer()
    assert got.status == "done"

    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    [item] = rep.items
    assert item.result == "recorded" and "not to this home" in (item.message or "")
    [part] = w.answers_dir().glob("*.cvb")
    opened = run_cli("restore", "open", part, "--out", tmp_path / "desk", "--home", desk.path)
    assert opened.code == 0, opened.err
    assert "web-1002" in (tmp_path / "desk" / "sample.jsonl").read_text()


def test_dsar_for_nobody_is_answered_subject_not_found(w: World) -> None:
    before = w.snapshot()
    w.ask(w.dpo, "dsar", emails=["nobody@example.com"], phones=[], received="2024-05-02")
    [got] = w.answer()
    assert (got.status, got.reason) == ("refused", "subject_not_found")
    assert w.snapshot() == before, "no case opened"


def test_requests_may_name_platform_ids(w: World) -> None:
    """Slack and Telegram users often have no e-mail: --id travels as the vault takes it."""
    asked = run_cli("request", "dsar", "--media", w.stick, "--id", "slack:U0NOBODY",
                    "--received", "2024-05-02", "--home", w.dpo.path, "--json")
    assert asked.code == 0, asked.err
    [got] = w.answer()
    assert (got.status, got.reason) == ("refused", "subject_not_found")  # looked up by id
    bad = run_cli("request", "erase", "--media", w.stick, "--id", "U0NOBODY", "--reason", "x",
                  "--home", w.dpo.path)
    assert bad.code == 2 and "platform id number 1 is not PLATFORM:ID" in bad.err
    with pytest.raises(UsageError, match="unknown parameter"):
        requestparams.check_params("dsar", {"emails": ["a@b.org"], "phones": [],
                                            "received": "2024-05-02", "names": ["x"]})


# -- erasure: legal holds and four eyes ----------------------------------------------------

def test_erasure_under_a_legal_hold_is_refused_and_nothing_erased(w: World) -> None:
    with subjects.open_vault(w.vlt.path) as v:
        holds.add(v, "LITIGATION-7", "court order", subject=subjects.Subject(emails=[ANA]))
    before = w.snapshot()
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    [got] = w.answer()
    assert (got.status, got.reason) == ("refused", "legal_hold")
    assert "LITIGATION-7" in got.message
    after = w.snapshot()
    listed = after.pop("erasures")
    before.pop("erasures")
    assert after == before and _found(w, ANA) == 1
    # listed by 'erase list' as refused, naming the hold, as the erase command's would be
    [row] = w.vault.cli("erase", "list", "--json").json()["erasures"]
    asker = f"request:{w.dpo.public().fingerprint}"
    assert (row["status"], row["requested_by"]) == ("refused", asker)
    assert "LITIGATION-7" in row["note"] and len(listed) == 1
    assert w.rows()[asked["request_id"]]["status"] == "refused"
    assert [e["detail"]["reason"] for e in w.audit("request.refused")] == ["legal_hold"]
    assert w.audit("erase.refused"), "the erasure's own refusal is audited too"


def test_four_eyes_single_signature_waits_then_operator_approves(w: World,
                                                                 tmp_path: Path) -> None:
    w.four_eyes()
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    [got] = w.answer()
    assert (got.status, got.reason) == ("pending", "approval_needed")
    assert _found(w, ANA) == 1, "not applied on one signature"
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [i.status for i in rep.items] == ["pending"]
    assert (w.requests_dir() / asked["file"]).is_file(), "the request stays on the stick"
    assert answers.status(w.dpo.path)["requests"][0]["state"] == "pending approval"

    status = w.vault.cli("vault", "status", "--json").json()
    [waits] = [f for f in status["findings"] if f["check"] == "requests"]  # type: ignore
    assert waits["level"] == "WARNING" and "erase approve E-0001" in waits["message"]

    approved = w.vault.cli("erase", "approve", "E-0001", "--json", "--yes")  # any operator
    assert approved.code == 0, approved.err
    status = w.vault.cli("vault", "status", "--json").json()
    assert not [f for f in status["findings"] if f["check"] == "requests"]  # type: ignore
    assert _found(w, ANA) == 0
    [final] = w.answer()  # the next insertion carries the final answer home
    assert (final.status, final.reason) == ("done", None)
    assert "approved at the vault" in final.message
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [i.status for i in rep.items] == ["done"]
    assert not (w.requests_dir() / asked["file"]).exists()
    assert answers.status(w.dpo.path)["requests"] == []


def test_four_eyes_two_dpo_signatures_apply_at_once(w: World) -> None:
    w.four_eyes()
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    r = run_cli("request", "approve", asked["path"], "--home", w.dpo2.path, "--yes")
    assert r.code == 0, r.err
    assert ANA in r.err, "the approver is shown what they approve"
    [got] = w.answer()
    assert got.status == "done", got.message
    assert _found(w, ANA) == 0
    with w.vault.conn() as conn:
        row = conn.execute("SELECT requested_by, approved_by FROM erasures").fetchone()
    assert row == (f"request:{w.dpo.public().fingerprint}",
                   f"dpo:{w.dpo2.public().fingerprint}")


def test_approve_refusals_name_the_request_file(w: World) -> None:
    erase = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")["path"]
    dsar = w.ask(w.dpo, "dsar", emails=[ANA], phones=[], received="2024-05-02")["path"]
    for path, who, said, code in ((erase, w.dpo, "already signed with this home's key", 4),
                                  (dsar, w.dpo2, "only erasure requests", 2)):
        r = run_cli("request", "approve", path, "--home", who.path, "--yes")
        assert r.code == code and r.err.startswith(f"chatvault: {path}: "), r.err
        assert said in r.err and len(r.err.strip().splitlines()) == 1


def test_four_eyes_second_signature_on_a_pending_request(w: World) -> None:
    w.four_eyes()
    asked = w.ask(w.dpo, "erase", emails=[MARA], phones=[], reason="asked")
    assert w.answer()[0].status == "pending"
    r = run_cli("request", "approve", asked["path"], "--home", w.dpo2.path, "--yes", "--json")
    assert r.code == 0, r.err
    [got] = w.answer()
    assert got.status == "done" and "second DPO signature" in got.message
    assert _found(w, MARA) == 0


def test_a_second_signature_after_expiry_does_not_approve(w: World,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    w.four_eyes()
    asked = w.ask(w.dpo, "erase", emails=[MARA], phones=[], reason="asked")
    assert w.answer()[0].status == "pending"
    held = _found(w, MARA)
    assert held > 0
    r = run_cli("request", "approve", asked["path"], "--home", w.dpo2.path, "--yes")
    assert r.code == 0, r.err
    later = datetime.now(timestamps.UTC) + timedelta(days=60)  # the stick came back late
    real = requests.Request.expired
    monkeypatch.setattr(requests.Request, "expired", lambda self, now=None: real(self, later))
    [got] = w.answer()
    assert (got.status, got.reason) == ("pending", "expired"), got.message
    assert "erase approve E-0001" in got.message
    assert _found(w, MARA) == held, "an expired request's second signature approves nothing"
    approved = w.vault.cli("erase", "approve", "E-0001", "--json", "--yes")  # the vault can
    assert approved.code == 0, approved.err
    assert _found(w, MARA) == 0


def test_approve_refusals(w: World, tmp_path: Path) -> None:
    erase = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    mine = run_cli("request", "approve", erase["path"], "--home", w.dpo.path, "--yes")
    assert mine.code == 4 and "different DPO" in mine.err  # four eyes: policy
    dsar = w.ask(w.dpo, "dsar", emails=[ANA], phones=[], received="2024-05-02")
    other = run_cli("request", "approve", dsar["path"], "--home", w.dpo2.path, "--yes")
    assert other.code == 2 and "only erasure requests" in other.err
    stranger = home.create("requester", tmp_path / "dpo3", "dpo-carl")
    untrusting = run_cli("request", "approve", erase["path"], "--home", stranger.path, "--yes")
    assert untrusting.code == 4, untrusting.err
    t = stranger.trust()
    t.trust(w.dpo.public_key.read_text(), "dpo")
    t.save()
    blind = run_cli("request", "approve", erase["path"], "--home", stranger.path, "--yes")
    assert blind.code == 2 and "cannot see" in blind.err
    declined = run_cli("request", "approve", erase["path"], "--home", w.dpo2.path,
                       input_text="n\n")
    assert declined.code == 1
    no_tty = run_cli("request", "approve", erase["path"], "--home", w.dpo2.path,
                     input_text="")
    assert no_tty.code == 2 and "pass --yes to approve without a prompt" in no_tty.err
    assert "Aborted" not in no_tty.err
    assert len(json.loads(Path(erase["path"]).read_text())["signatures"]) == 1


# -- interrupted runs resume; answers to other homes are left alone ------------------------

def test_a_run_interrupted_by_full_media_resumes_without_doing_it_twice(
        w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import restore

    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    real = restore.place

    def full(*args: object, **kw: object) -> Path:
        raise MediaFull("no space left on device", path=w.answers_dir())

    monkeypatch.setattr(restore, "place", full)
    with pytest.raises(MediaFull):
        w.answer()
    assert w.rows()[asked["request_id"]]["status"] == "working"
    status = w.vault.cli("vault", "status", "--json").json()
    assert any("was interrupted" in f["message"] for f in status["findings"])  # type: ignore
    monkeypatch.setattr(restore, "place", real)
    [got] = w.answer()
    assert got.status == "done"
    with w.vault.conn() as conn:
        assert conn.execute("SELECT count(*) FROM dsar_cases").fetchone()[0] == 1
    assert answers.collect(w.dpo.path, w.stick, tmp_path / "out").items[0].result == "opened"


def test_collect_leaves_other_homes_answers_alone(w: World, tmp_path: Path) -> None:
    w.ask(w.it, "restore", source="sample")
    w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    w.answer()
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    assert sorted((i.action, i.result) for i in rep.items) == [("dsar", "not_ours"),
                                                               ("restore", "opened")]
    left = sorted(p.name for p in w.answers_dir().iterdir())
    assert len(left) == 2 and all(n.startswith("dsar-") for n in left)


def test_a_second_vault_answers_the_same_request(w: World, tmp_path: Path) -> None:
    from conftest import make_pair
    from gdpr_kit import SAMPLE
    from vault import bundle, ingest
    from requests_kit import trust

    other = make_pair(tmp_path / "site-b").vault
    trust(other, w.vault.pair.exporter, "exporter")
    trust(other, w.dpo, "dpo")
    trust(w.dpo, other, "vault")
    feed = tmp_path / "feed"
    (feed / media.ROOT / media.OUTBOX).mkdir(parents=True)
    bundle.seal_jsonl(SAMPLE, feed / media.ROOT / media.OUTBOX / bundle.file_name("sample", 1),
                      w.vault.pair.exporter.identity(), [other.public()], source="sample",
                      sequence=1)
    ingest.ingest_media(other.path, feed)

    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    assert len(asked["vaults"]) == 2
    w.answer()
    answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert (w.requests_dir() / asked["file"]).is_file(), "site B has not answered yet"
    [got] = requests.answer_media(other.path, w.stick)
    assert got.status == "done"
    answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert not (w.requests_dir() / asked["file"]).exists()
    entry = answers.load_state(w.dpo.path)["requests"][asked["request_id"]]
    assert sorted(entry["answers"]) == sorted([w.vlt.public().fingerprint,
                                               other.public().fingerprint])
