"""Identifiers linked to the subject's own participant record, and ids left as they are.

Ana's Slack record holds her e-mail and her phone. Looked up by e-mail:

* her DSAR package keeps her phone where she wrote it and lists it as a
  linked identifier (held on the same record), while another customer's
  number is still redacted;
* ``subject find`` and ``erase`` (plan, confirmation, result) name the phone
  as linked but not given; the erasure is not widened to it;
* a Telegram chat id (ten digits) and message ids are never taken for phone
  numbers in the package; another person's known identifier written whole
  in an id still is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import Pair, run_cli
from vault import ingest
from vault_kit import Chain, open_store, outbox, stick

AT = "2024-03-14T09:05:12Z"
EMAIL, PHONE = "ana.example@example.org", "+447700900123"
OWN_TEXT = "Hi, my email is ana.example@example.org and phone +44 7700 900123"


def _chat(cid: str, ana: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    people = [ana, {"id": "a1", "role": "agent", "name": "Ines"}]
    msgs = [{"id": f"{cid}.{i}", "at": AT, "from": ana["id"] if i % 2 == 0 else "a1",
             "text": t} for i, t in enumerate(texts)]
    return {"conversation_id": cid, "started_at": AT, "participants": people,
            "messages": msgs}


def _ana(pid: str, **fields: Any) -> dict[str, Any]:
    return {"id": pid, "role": "customer", "name": "Ana Example", **fields}


@pytest.fixture
def linked(pair: Pair, tmp_path: Path) -> Pair:
    """Slack (e-mail and phone on one record), Telegram (no region), web (phone only)."""
    slack = _chat("C01ANA", _ana("U01ANA0001", email=EMAIL, phone="+44 7700 900123",
                                 platform_ids={"slack": "U01ANA0001"}),
                  [OWN_TEXT, "Thanks", "my friend's number is +44 7700 900456"])
    slack["messages"].append({"id": "1710407112.123456", "at": AT, "from": "a1",
                              "text": "Noted"})
    telegram = _chat("4200000001", _ana("user4200000001", email=EMAIL), [OWN_TEXT, "ok"])
    web = _chat("w-ana", _ana("c1", phone="07700 900123"), [OWN_TEXT, "ok"])
    media = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media))
    chain.seal([slack], source="slack")
    chain.seal([telegram], source="telegram", context={})
    chain.seal([web], source="web")
    assert {o.status for o in ingest.ingest_media(pair.vault_path, media)} == {"ingested"}
    return pair


def _cli(pair: Pair, *args: str | Path, input_text: str | None = None) -> Any:
    return run_cli(*args, "--home", pair.vault_path, input_text=input_text)


def _package(pair: Pair, tmp_path: Path) -> tuple[dict[str, Any], Path, Any]:
    r = _cli(pair, "dsar", "open", "--received", "2024-09-02", "--email", EMAIL, "--json")
    case = r.json()["case_id"]
    r = _cli(pair, "dsar", "export", case, "--out", tmp_path / "out", "--json")
    assert r.code == 0, r.err
    pkg = Path(r.json()["path"])
    return json.loads((pkg / "data.json").read_text()), pkg, r.json()


def test_dsar_by_email_keeps_her_own_phone_and_lists_it_as_linked(linked: Pair,
                                                                  tmp_path: Path) -> None:
    data, pkg, result = _package(linked, tmp_path)
    jsonschema.validate(data, json.loads((pkg / "schema" / "dsar-package.schema.json")
                                         .read_text()))
    by_id = {c["conversation_id"]: c for c in data["conversations"]}
    assert set(by_id) == {"C01ANA", "4200000001", "w-ana"}
    assert by_id["C01ANA"]["messages"][0]["text"] == OWN_TEXT
    assert by_id["4200000001"]["messages"][0]["text"] == OWN_TEXT
    # another person's number is still redacted
    assert by_id["C01ANA"]["messages"][2]["text"] == "my friend's number is [phone redacted]"
    [phone] = [x for x in data["subject"]["linked"] if x["kind"] == "phone"]
    assert phone["value"] == PHONE
    assert phone["linked_by"] == f"held on the same participant record as e-mail {EMAIL}"
    assert data["subject"]["phones"] == []  # what was searched with: the e-mail
    assert f"Also linked to you in our records: {PHONE}" in (pkg / "index.html").read_text()
    assert {x["value"] for x in result["linked"]} == {PHONE, "slack:U01ANA0001"}


def test_dsar_export_names_linked_identifiers_in_text(linked: Pair, tmp_path: Path) -> None:
    r = _cli(linked, "dsar", "open", "--received", "2024-09-02", "--email", EMAIL, "--json")
    r = _cli(linked, "dsar", "export", r.json()["case_id"], "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert (f"also linked to this subject: phone {PHONE} (participant U01ANA0001 in "
            f"slack/C01ANA, on the same record as e-mail {EMAIL}") in r.err
    assert "open a case with --phone too" in r.err


def test_record_ids_never_go_through_phone_redaction(linked: Pair, tmp_path: Path) -> None:
    data, pkg, _ = _package(linked, tmp_path)
    ids = [c["conversation_id"] for c in data["conversations"]]
    assert "4200000001" in ids and "[phone redacted]" not in ids
    [slack] = [c for c in data["conversations"] if c["conversation_id"] == "C01ANA"]
    assert slack["messages"][-1]["id"] == "1710407112.123456"
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert not [e for e in manifest["redactions"]
                if e.get("field") in ("conversation_id", "message.id")]


def test_another_persons_known_identifier_in_an_id_is_still_replaced(
        pair: Pair, tmp_path: Path) -> None:
    chat = _chat("ben.sample@example.org-4200000002", _ana("c1", email=EMAIL), ["hi", "ok"])
    chat["participants"].append({"id": "c2", "role": "customer", "name": "Ben Sample",
                                 "email": "ben.sample@example.org",
                                 "phone": "+44 7700 900456"})
    chat["messages"][0]["id"] = "m-447700900456"
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([chat])
    ingest.ingest_media(pair.vault_path, media)
    data, _, _ = _package(pair, tmp_path)
    [c] = data["conversations"]
    assert c["conversation_id"] == "[e-mail redacted]-4200000002"
    assert c["messages"][0]["id"] == "m-[phone redacted]"


def test_subject_find_names_linked_identifiers(linked: Pair) -> None:
    r = _cli(linked, "subject", "find", "--email", EMAIL, "--json")
    links = {x["value"]: x for x in r.json()["linked"]}
    assert set(links) == {PHONE, "slack:U01ANA0001"}
    assert links[PHONE]["option"] == "--phone" and links[PHONE]["via"][0] == {
        "identifier": f"e-mail {EMAIL}", "source": "slack", "conversation_id": "C01ANA",
        "participant_id": "U01ANA0001"}
    text = _cli(linked, "subject", "find", "--email", EMAIL)
    assert f"also linked to this subject: phone {PHONE} (participant U01ANA0001" in text.out
    assert "add --phone to include it" in text.out
    both = _cli(linked, "subject", "find", "--email", EMAIL, "--phone", PHONE, "--json")
    assert {x["value"] for x in both.json()["linked"]} == {"slack:U01ANA0001"}


def test_erase_by_email_names_the_linked_phone_and_does_not_widen(linked: Pair) -> None:
    base = ("erase", "--email", EMAIL, "--reason", "Art. 17 letter")
    plan = _cli(linked, *base, "--dry-run", "--json").json()
    [link] = plan["linked_not_given"]  # the Slack platform id is erased with her record
    assert (link["kind"], link["value"], link["option"]) == ("phone", PHONE, "--phone")
    preview = _cli(linked, *base, "--dry-run")
    assert f"also linked to this subject: phone {PHONE}" in preview.err
    assert "add --phone to include it" in preview.err

    asked = _cli(linked, *base, input_text="n\n")
    assert "leaving the 1 linked identifier(s) named above as they are? [y/N]" in asked.err
    done = _cli(linked, *base, "--yes", "--json")
    assert done.code == 0, done.err
    assert [x["value"] for x in done.json()["linked_not_given"]] == [PHONE]
    # the operator approved the e-mail: her phone-only chat keeps the number
    found = _cli(linked, "subject", "find", "--phone", PHONE, "--json").json()
    assert [r["conversation_id"] for r in found["results"]] == ["w-ana"]
    with open_store(linked) as conn:
        texts = [t for (t,) in conn.execute("SELECT text FROM messages ORDER BY id")]
    assert texts == ["Hi, my email is [erased e-mail] and phone +44 7700 900123", "ok"]


def test_erase_with_the_linked_phone_names_nothing_more(linked: Pair) -> None:
    plan = _cli(linked, "erase", "--email", EMAIL, "--phone", PHONE, "--reason", "Art. 17",
                "--dry-run", "--json").json()
    assert plan["linked_not_given"] == []


# -- a phone two people share -------------------------------------------------------------

MARA, OLAF, SHARED = "mara@example.org", "olaf@example.org", "+447700900777"


@pytest.fixture
def household(pair: Pair, tmp_path: Path) -> Pair:
    """Mara and Olaf give the same home phone; Mara's chat names Olaf's address."""
    mara = _chat("c-mara", _ana("m1", email=MARA, phone=SHARED, name="Mara"),
                 [f"Your neighbour {OLAF} complained", "noted"])
    olaf = _chat("c-olaf", _ana("o1", email=OLAF, phone=SHARED, name="Olaf"),
                 ["where is my parcel", "on its way"])
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([mara, olaf], source="web")
    assert {o.status for o in ingest.ingest_media(pair.vault_path, media)} == {"ingested"}
    return pair


def test_a_shared_phone_is_named_as_shared_not_suggested(household: Pair) -> None:
    r = _cli(household, "subject", "find", "--email", MARA)
    assert r.code == 0, r.err
    said = r.out + r.err
    assert "also on records with 1 other e-mail address(es)" in said
    assert "add --phone to include it" not in said
    [link] = _cli(household, "subject", "find", "--email", MARA, "--json").json()["linked"]
    assert (link["value"], link["shared_with"], link["conflict"]) == (SHARED, 1, False)


def test_a_dsar_by_a_shared_phone_warns_and_keeps_nothing_linked_as_hers(
        household: Pair, tmp_path: Path) -> None:
    r = _cli(household, "dsar", "open", "--received", "2024-09-02", "--phone", SHARED, "--json")
    r = _cli(household, "dsar", "export", r.json()["case_id"], "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert "WARNING: the records reached name more than one e-mail address" in r.err
    assert f"e-mail {OLAF}" in r.err and "perhaps another person" in r.err
    pkg = next((tmp_path / "out").iterdir())
    data = json.loads((pkg / "data.json").read_text())
    assert data["subject"]["linked"] == []
    mara = next(c for c in data["conversations"] if "Your neighbour" in
                c["messages"][0]["text"])
    assert mara["messages"][0]["text"] == "Your neighbour [e-mail redacted] complained"


def test_erase_plan_does_not_suggest_another_person_s_address(household: Pair) -> None:
    r = _cli(household, "erase", "--email", MARA, "--phone", SHARED, "--dry-run", "--json")
    assert r.code == 0, r.err
    [link] = r.json()["linked_not_given"]
    assert (link["value"], link["conflict"]) == (OLAF, True)
    text = _cli(household, "erase", "--email", MARA, "--phone", SHARED, "--dry-run")
    assert "perhaps another person: do not add --email without checking" in text.err + text.out
