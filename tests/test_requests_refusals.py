"""Requests the vault must refuse: forged, untrusted, revoked, wrong role, expired, replayed,
malformed, not addressed to it. Each is answered with the right reason, audited, and
nothing is done: the store (conversations, cases, erasures, tombstones) is unchanged and no
restore set or package is written. Answers that fail verification online are reported.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from requests_kit import ANA, JONAS, World, copy_request, past, resign, trust, world
from vault import answers, home, media, requestrun, requests, signed, timestamps
from vault.errors import EXIT_POLICY, EXIT_REJECTED


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def refused(w: World, reason: str, stick: Path | None = None) -> Any:
    """Answer the stick; exactly one refusal with ``reason``, and nothing done."""
    before = w.snapshot()
    refused_before = len(w.audit("request.refused"))
    folder = w.answers_dir(stick)
    there = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    [got] = w.answer(stick)
    assert (got.status, got.reason) == ("refused", reason), got.message
    assert w.snapshot() == before, "a refused request changes nothing"
    new = {p.name for p in folder.iterdir()} - there
    assert new == {got.answer_file}, "only the answer: no restore set, no package"
    body = w.answer_bodies(stick)[got.answer_file]
    assert (body["status"], body["reason"]) == ("refused", reason)
    audited = w.audit("request.refused")
    assert len(audited) == refused_before + 1 and audited[0]["detail"]["reason"] == reason
    return got


def test_forged_request_is_refused(w: World) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    doc = signed.load(Path(asked["path"]))
    doc["body"]["expires_at"] = doc["body"]["created_at"][:4] + "-12-31T00:00:00Z"
    Path(asked["path"]).write_bytes(signed.dumps(doc))  # changed, not signed again
    got = refused(w, "forged")
    assert got.exit_code == EXIT_REJECTED
    assert w.rows() == {}, "an unverified id is not recorded (anyone can write any id)"
    assert got.answer_file.endswith(".forged.answer.json")


def test_parameters_spliced_from_another_request_are_refused(w: World) -> None:
    mine = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    other = w.ask(w.dpo, "erase", emails=[JONAS], phones=[], reason="asked")
    doc = signed.load(Path(mine["path"]))
    doc["body"]["params"] = signed.load(Path(other["path"]))["body"]["params"]
    Path(mine["path"]).write_bytes(signed.dumps(doc))
    os.unlink(other["path"])
    refused(w, "forged")


def test_untrusted_signer_is_refused(w: World, tmp_path: Path) -> None:
    stranger = home.create("requester", tmp_path / "stranger", "stranger")
    trust(stranger, w.vlt, "vault")
    w.ask(stranger, "erase", emails=[ANA], phones=[], reason="because")
    got = refused(w, "untrusted")
    assert got.exit_code == EXIT_POLICY


def test_revoked_signer_is_refused(w: World) -> None:
    t = w.vlt.trust()
    t.revoke(w.dpo.public().fingerprint)
    t.save()
    w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    refused(w, "revoked")


def test_wrong_role_is_refused(w: World) -> None:
    w.ask(w.it, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    refused(w, "wrong_role")


def test_dpo_cannot_ask_for_a_restore_without_the_requester_role(w: World) -> None:
    w.ask(w.dpo, "restore", source="sample")
    refused(w, "wrong_role")


def test_second_signature_of_a_non_dpo_key_is_refused(w: World) -> None:
    w.four_eyes()
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    doc = signed.load(Path(asked["path"]))
    signed.add_signature(doc, w.it.identity())  # IT staff: trusted, but not as dpo
    Path(asked["path"]).write_bytes(signed.dumps(doc))
    refused(w, "wrong_role")


def test_expired_request_is_refused_and_recorded(w: World) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    resign(Path(asked["path"]), w.dpo, created_at=past(20), expires_at=past(6))
    refused(w, "expired")
    assert w.rows()[asked["request_id"]]["status"] == "refused"


def test_request_made_in_the_future_is_refused_and_recorded(w: World) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    resign(Path(asked["path"]), w.dpo, created_at=past(-2), expires_at=past(-12))
    got = refused(w, "clock_skew")
    assert "ahead of the vault's clock" in got.message and got.exit_code == EXIT_POLICY
    assert w.rows()[asked["request_id"]]["status"] == "refused"


def test_a_few_minutes_of_clock_skew_are_allowed(w: World) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    soon = datetime.now(timestamps.UTC) + requests.CLOCK_SKEW - timedelta(minutes=5)
    resign(Path(asked["path"]), w.dpo, created_at=timestamps.format_utc(soon))
    [got] = w.answer()
    assert got.status == "done", got.message


def test_replayed_request_is_refused_with_its_first_answer(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    saved = copy_request(w, asked, tmp_path / "copy")
    [first] = w.answer()
    assert first.status == "done"
    answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert not list(w.requests_dir().iterdir()), "answered: removed online"

    again = tmp_path / "replay-stick"
    copy_request(w, {"path": saved, "file": saved.name}, again)
    got = refused(w, "replay", again)
    body = w.answer_bodies(again)[got.answer_file]
    assert body["first_answer"]["status"] == "done"
    assert body["first_answer"]["case_id"] == "DSAR-2024-0001"
    assert got.answer_file.endswith(".replay.answer.json")

    # collected online: a notice, not a second answer; the request stays answered
    rep = answers.collect(w.dpo.path, again, tmp_path / "out")
    assert [(i.result, i.reason) for i in rep.items] == [("notice", "replay")]


def test_replay_left_on_the_same_stick_keeps_the_first_answer(w: World) -> None:
    asked = w.ask(w.it, "restore", source="sample")
    [first] = w.answer()
    kept = (w.answers_dir() / first.answer_file).read_bytes()
    parts = sorted(w.answers_dir().glob("*.cvb"))
    got = w.answer()[0]
    assert (got.status, got.reason) == ("refused", "replay")
    assert (w.answers_dir() / first.answer_file).read_bytes() == kept
    assert sorted(w.answers_dir().glob("*.cvb")) == parts, "no second restore set"
    assert w.rows()[asked["request_id"]]["status"] == "done"


def test_another_request_reusing_an_id_is_refused_as_a_replay(w: World) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    w.answer()
    resign(Path(asked["path"]), w.dpo, expires_at=past(-30))  # same id, another body
    got = refused(w, "replay")
    assert "another request" in got.message


@pytest.mark.parametrize("content, detail", [
    (b"not json at all", "not JSON"),
    (b'{"body": {"kind": "request"}, "signatures": []}', "format"),
    (b'{"body": {"kind": "receipt", "x": 1}, "signatures": []}', "not a request"),
])
def test_malformed_files_are_refused(w: World, content: bytes, detail: str) -> None:
    folder = w.requests_dir()
    folder.mkdir(parents=True)
    (folder / "erase-0000.request.json").write_bytes(content)
    got = refused(w, "malformed")
    assert detail in got.message


def test_oversized_and_odd_files(w: World) -> None:
    folder = w.requests_dir()
    folder.mkdir(parents=True)
    (folder / "big.request.json").write_bytes(b" " * (signed.MAX_DOCUMENT + 1))
    refused(w, "malformed")
    for done in [*w.answers_dir().iterdir(), folder / "big.request.json"]:
        done.unlink()
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    # a symlink and an odd name are not even looked at
    os.rename(asked["path"], folder / "elsewhere.json")
    (folder / "link.request.json").symlink_to(folder / "elsewhere.json")
    (folder / "weird name.request.json").write_bytes(Path(folder / "elsewhere.json")
                                                     .read_bytes())
    before = w.snapshot()
    assert w.answer() == []
    assert w.snapshot() == before and not list(w.answers_dir().iterdir())


def test_parameters_not_sealed_to_this_vault(w: World, tmp_path: Path) -> None:
    elsewhere = home.create("vault", tmp_path / "other-vault", "vault-z")
    t = w.dpo.trust()
    t.entries.pop(w.vlt.public().fingerprint)
    t.trust(elsewhere.public_key.read_text(), "vault")
    t.save()
    w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    refused(w, "not_addressed")


def test_parameters_the_vault_cannot_use(w: World, tmp_path: Path) -> None:
    tomorrow = past(-2)[:10]
    w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received=tomorrow)
    got = refused(w, "malformed")
    assert "future" in got.message


def test_online_side_checks_parameters_before_writing(w: World) -> None:
    from conftest import run_cli

    bad = run_cli("request", "dsar", "--media", w.stick, "--email", "not-an-address",
                  "--received", "2024-05-02", "--home", w.dpo.path)
    assert bad.code == 2 and "not an e-mail address" in bad.err
    assert "not-an-address" not in bad.err, "the value itself is never echoed"
    nothing = run_cli("request", "erase", "--media", w.stick, "--reason", "x",
                      "--home", w.dpo.path)
    assert nothing.code == 2 and "at least one" in nothing.err
    restore = run_cli("request", "restore", "--media", w.stick, "--since", "2024-13-01",
                      "--source", "sample", "--home", w.it.path)
    assert restore.code == 2
    many = [f"--conversation={'c' * 200}-{n}" for n in range(6000)]
    huge = run_cli("request", "restore", "--media", w.stick, *many, "--home", w.it.path)
    assert huge.code == 2 and "more than a vault reads" in huge.err
    untrusting = home.create("requester", w.vault.pair.root / "lonely", "lonely")
    lonely = run_cli("request", "erase", "--media", w.stick, "--email", ANA, "--reason", "x",
                     "--home", untrusting.path)
    assert lonely.code == 2 and "trusts no vault key" in lonely.err
    assert not w.requests_dir().exists() or not list(w.requests_dir().iterdir())


# -- answers that fail verification online -------------------------------------------------

def test_collect_reports_damaged_and_forged_answers(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.it, "restore", source="sample")
    w.answer()
    [part] = w.answers_dir().glob("*.cvb")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.write_bytes(bytes(data))
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    [item] = rep.items
    assert item.result == "rejected" and rep.exit_code == EXIT_REJECTED
    assert "differs from what the vault wrote" in item.error["message"]
    assert part.exists() and (w.requests_dir() / asked["file"]).exists(), "left in place"
    # the vault refuses the same request twice: only a new one gets the files again
    assert "make a new request" in item.message
    status = answers.status(w.it.path)
    assert status["requests"][0]["state"] == "answer damaged" and status["exit_code"] == 1

    [answer] = w.answers_dir().glob("*.answer.json")
    doc = json.loads(answer.read_text())
    doc["body"]["status"] = "refused"
    answer.write_text(json.dumps(doc))
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    assert rep.items[0].error["error"] == "bad_document"


def test_answer_from_an_untrusted_vault_is_rejected(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    impostor = home.create("vault", tmp_path / "impostor", "impostor")
    doc = requestrun.make_answer(impostor.identity(), verified=True, status="done", reason=None,
                               message="all erased", request_id=asked["request_id"],
                               request_digest=asked["digest"], request_file=asked["file"],
                               action="erase")
    folder = media.folder(w.stick, media.ANSWERS, create=True)
    requestrun.write_answer(folder, doc, "erase-x.IMPOSTOR1.answer.json")
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.error["error"]) for i in rep.items] == [("rejected",
                                                                  "untrusted_signer")]
    assert answers.status(w.dpo.path)["requests"][0]["state"] == "waiting"


def test_a_forged_copy_of_my_request_does_not_settle_it(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    doc = signed.load(Path(asked["path"]))
    doc["body"]["params"]["ciphertext"] = doc["body"]["params"]["ciphertext"][::-1]
    Path(asked["path"]).write_bytes(signed.dumps(doc))
    refused(w, "forged")
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.reason) for i in rep.items] == [("notice", "forged")]
    assert answers.status(w.dpo.path)["requests"][0]["state"] == "waiting"


def test_status_warns_when_a_request_expired_unanswered(w: World) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked", days=1)
    from datetime import datetime, timedelta

    from vault import timestamps

    later = datetime.now(timestamps.UTC) + timedelta(days=2)
    rep = answers.status(w.dpo.path, now=later)
    assert rep["status"] == "WARNING" and rep["exit_code"] == 1
    assert rep["requests"][0]["request_id"] == asked["request_id"]
    assert rep["requests"][0]["expired"] is True
    assert answers.status(w.dpo.path)["exit_code"] == 0


def test_replay_notice_collected_before_the_first_answer(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.it, "restore", source="sample")
    other = tmp_path / "second-stick"
    copy_request(w, asked, other)
    assert w.answer()[0].status == "done"
    refused(w, "replay", other)

    rep = answers.collect(w.it.path, other, tmp_path / "out")
    [item] = rep.items
    assert (item.result, item.reason) == ("notice", "replay") and rep.exit_code == 0
    assert "on another stick" in (item.message or "")
    assert answers.status(w.it.path)["requests"][0]["state"] == "waiting"
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    assert [i.result for i in rep.items] == ["opened"]
    assert answers.status(w.it.path)["requests"] == []


def test_collect_names_what_no_vault_wrote_in_answers_and_exits_3(w: World,
                                                                 tmp_path: Path) -> None:
    """A link, a FIFO, a folder, a strange name or a 100 MB "answer": listed, never read."""
    from conftest import run_cli

    w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    [got] = w.answer()
    assert got.status == "done", got.message
    folder = w.answers_dir()
    secret = tmp_path / "secret"
    secret.write_text("not for the stick")
    (folder / "erase-x.LINK00001.answer.json").symlink_to(secret)
    (folder / "restore-x-0001.cvb").symlink_to(secret)
    os.mkfifo(folder / "erase-y.FIFO00001.answer.json")
    (folder / "sub.answer.json").mkdir()
    (folder / "notes\nevil.txt").write_text("?")
    with open(folder / "erase-z.HUGE00001.answer.json", "wb") as fh:
        fh.truncate(100 * 1024 * 1024)

    r = run_cli("request", "collect", "--media", w.stick, "--out", tmp_path / "out", "--keep",
                "--json", "--home", w.dpo.path)
    assert r.code == EXIT_REJECTED, r.err
    out = r.json()
    assert [a["result"] for a in out["answers"]] == ["recorded"]  # type: ignore[index]
    ignored = out["ignored"]  # type: ignore[index]
    said = "\n".join(ignored)
    assert len(ignored) == 6 and not any("\n" in line for line in ignored), ignored
    assert "erase-x.LINK00001.answer.json: a symbolic link" in said
    assert "restore-x-0001.cvb: a symbolic link" in said
    assert "erase-y.FIFO00001.answer.json: a FIFO" in said
    assert "sub.answer.json: a directory" in said
    assert "'notes\\nevil.txt'" in said
    assert "erase-z.HUGE00001.answer.json: larger than 1048576 bytes" in said
    assert secret.read_text() == "not for the stick"

    text = run_cli("request", "collect", "--media", w.stick, "--out", tmp_path / "out2",
                   "--home", w.dpo.path)
    assert text.code == EXIT_REJECTED, text.err
    lines = [ln for ln in text.out.splitlines() if ln.startswith("ignored")]
    assert len(lines) == 6, text.out
    assert "6 odd entries ignored" in text.err
