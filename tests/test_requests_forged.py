"""A request file that does not verify settles nothing, wherever it lies on the stick.

Whoever holds the stick can copy a real request and break its signature:
the copy names the real request's id and digest. The vault must answer it
without claiming that id (a notice naming the file and its SHA-256,
``verified: false``, no row in its replay memory); the online side must
report it and still collect the real answer, and never remove from the
stick what it did not collect.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import pytest

from requests_kit import ANA, JONAS, World, world
from vault import answers, home, requestrun, signed
from vault.errors import EXIT_REJECTED


@pytest.fixture
def w(tmp_path: Path) -> World:
    return world(tmp_path)


def forged_copy(path: Path, name: str) -> Path:
    """The request at ``path`` as ``name`` beside it, one bit of its signature flipped."""
    doc = signed.load(path)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[7] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode("ascii")
    target = path.parent / name
    target.write_bytes(signed.dumps(doc))
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def short(w: World) -> str:
    return w.vlt.public().fingerprint.replace("-", "")[:9]


def test_a_forged_copy_beside_a_dsar_request_costs_nothing(w: World, tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    rid = asked["request_id"]
    fake = forged_copy(Path(asked["path"]), "a-" + asked["file"])

    got = {a.file: a for a in w.answer()}
    assert [got[fake.name].file, got[asked["file"]].file] == [fake.name, asked["file"]]
    assert (got[fake.name].status, got[fake.name].reason) == ("refused", "forged")
    assert got[fake.name].request_id is None, "an unverified id is not the vault's to name"
    assert got[asked["file"]].status == "done", "the forged copy first: not a replay"
    assert list(w.rows()) == [rid] and w.rows()[rid]["status"] == "done"

    bodies = w.answer_bodies()
    notice = bodies[got[fake.name].answer_file]
    assert notice["verified"] is False
    assert (notice["request_id"], notice["request_digest"], notice["action"]) == (
        None, None, None)
    assert (notice["request_file"], notice["request_sha256"]) == (fake.name, sha256(fake))
    assert notice["claimed_request_id"] == rid
    assert bodies[got[asked["file"]].answer_file]["verified"] is True
    [audited] = w.audit("request.refused")
    assert audited["target"] is None and audited["detail"]["sha256"] == sha256(fake)

    out = tmp_path / "out"
    rep = answers.collect(w.dpo.path, w.stick, out)
    seen = {i.file: (i.result, i.status, i.reason) for i in rep.items}
    assert seen == {got[asked["file"]].answer_file: ("opened", "done", None),
                    got[fake.name].answer_file: ("notice", "refused", "forged")}
    assert rep.exit_code == EXIT_REJECTED, "someone put a forged file on the stick"
    [warned] = [i for i in rep.items if i.result == "notice"]
    assert fake.name in (warned.message or "") and "settles nothing" in (warned.message or "")
    assert (out / f"dsar-{rid}.{short(w)}" / "data.json").is_file(), "the package is opened"
    [row] = answers.status(w.dpo.path, every=True)["requests"]
    assert row["state"] == "answered"
    assert [a["status"] for a in row["answers"].values()] == ["done"]
    assert fake.is_file(), "the forged file is not ours to remove"
    assert not list(w.answers_dir().glob("*.cvb")), "collected, so removed"


def test_a_forged_copy_answered_first_leaves_the_request_to_run(w: World,
                                                                tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    real = Path(asked["path"])
    saved = shutil.copy2(real, tmp_path / "saved.json")
    forged_copy(real, real.name)  # the real one replaced on one trip...
    [first] = w.answer()
    assert (first.status, first.reason) == ("refused", "forged") and w.rows() == {}

    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.reason) for i in rep.items] == [("notice", "forged")]
    assert answers.status(w.dpo.path)["requests"][0]["state"] == "waiting"
    assert real.is_file(), "not answered: the request file stays"

    shutil.copy2(saved, real)  # ... and brought back on the next
    [second] = w.answer()
    assert second.status == "done", second.message
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.status) for i in rep.items] == [("recorded", "done")]
    assert answers.status(w.dpo.path)["requests"] == []


@pytest.mark.parametrize("name", ["a-notice", "z-notice"])
def test_an_old_vaults_notice_claiming_the_id_never_settles_it(w: World, tmp_path: Path,
                                                               name: str) -> None:
    """Vaults before ``verified`` wrote the unverified id and digest into the notice."""
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    w.answer()
    old = requestrun.make_answer(
        w.vlt.identity(), verified=True, status="refused", reason="forged",
        message="bad signature", request_id=asked["request_id"],
        request_digest=asked["digest"], request_file="a-" + asked["file"], action="dsar")
    del old["body"]["verified"]
    old = signed.sign(old["body"], w.vlt.identity())
    requestrun.write_answer(w.answers_dir(), old, f"{name}.{short(w)}.forged.answer.json")

    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert sorted((i.result, i.status) for i in rep.items) == [("notice", "refused"),
                                                               ("opened", "done")]
    [row] = answers.status(w.dpo.path, every=True)["requests"]
    assert [a["status"] for a in row["answers"].values()] == ["done"]


def test_a_done_answer_overrides_a_refusal_recorded_before(w: World, tmp_path: Path) -> None:
    """A home whose older collector recorded a forged notice as the answer."""
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    with answers.state(w.dpo.path) as known:
        known["requests"][asked["request_id"]]["answers"][w.vlt.public().fingerprint] = {
            "status": "refused", "reason": "forged", "message": "bad signature"}
    w.answer()
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert [(i.result, i.status) for i in rep.items] == [("opened", "done")]
    assert answers.status(w.dpo.path)["requests"] == []


def test_what_was_not_collected_stays_on_the_stick(w: World, tmp_path: Path) -> None:
    desk = home.create("requester", tmp_path / "restore-desk", "restore-desk")
    asked = w.ask(w.it, "restore", conversations=["web-1002"])
    w.answer()
    [part] = w.answers_dir().glob("*.cvb")

    # an answer sealed to another key: recorded, kept, collected again: still there
    with answers.state(w.it.path) as known:
        known["requests"][asked["request_id"]]["answer_to"] = desk.public().fingerprint
    answers.collect(w.it.path, w.stick, tmp_path / "out", keep=True)
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    assert [i.result for i in rep.items] == ["already"]
    assert part.is_file(), "sealed to the desk, never opened here: not removed"


def test_an_answer_to_another_request_with_my_id_is_left_alone(w: World,
                                                               tmp_path: Path) -> None:
    asked = w.ask(w.it, "restore", source="sample")
    w.answer()
    there = sorted(p.name for p in w.answers_dir().iterdir())
    with answers.state(w.dpo.path) as known:  # the DPO's home claims the same id
        theirs = answers.load_state(w.it.path)["requests"][asked["request_id"]]
        known["requests"][asked["request_id"]] = {**theirs, "digest": "0" * 64}
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "dpo-out")
    assert [i.result for i in rep.items] == ["notice"]
    assert sorted(p.name for p in w.answers_dir().iterdir()) == there
    rep = answers.collect(w.it.path, w.stick, tmp_path / "it-out")
    assert [i.result for i in rep.items] == ["opened"]


def test_a_notice_for_nobodys_request_is_not_mine(w: World, tmp_path: Path) -> None:
    folder = w.requests_dir()
    folder.mkdir(parents=True)
    (folder / "junk.request.json").write_bytes(b"not json")
    w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked")
    w.answer()
    rep = answers.collect(w.dpo.path, w.stick, tmp_path / "out")
    assert sorted(i.result for i in rep.items) == ["not_ours", "recorded"]
    assert rep.exit_code == 0
    assert [p.name for p in w.answers_dir().iterdir()] == [
        f"junk.{short(w)}.malformed.answer.json"]


def test_my_own_request_refused_for_its_signer_is_not_called_tampering(
        w: World, tmp_path: Path) -> None:
    """IT staff's key is not trusted as dpo: the notice says what to mend, and where."""
    asked = w.ask(w.it, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    [got] = w.answer()
    assert (got.status, got.reason) == ("refused", "wrong_role")
    rep = answers.collect(w.it.path, w.stick, tmp_path / "out")
    [item] = rep.items
    assert item.result == "notice" and rep.exit_code == EXIT_REJECTED
    assert "this home's own request" in item.message and "tampered" not in item.message
    assert "--role dpo" in item.message
    assert Path(asked["path"]).is_file(), "the request stays for the next trip"
    assert answers.status(w.it.path)["requests"][0]["state"] == "waiting"


def test_a_forged_copy_of_my_request_is_still_called_tampering(w: World,
                                                               tmp_path: Path) -> None:
    asked = w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02")
    real = Path(asked["path"])
    forged_copy(real, real.name)
    w.answer()
    [item] = answers.collect(w.dpo.path, w.stick, tmp_path / "out").items
    assert item.result == "notice" and "tampered" in item.message
