"""DSAR packages are fair to others in every field they show, and fail cleanly.

Another customer's name, ids and contact details are redacted wherever the
package shows them (title, channel, status, ids, message and alt text,
attachment names, the HTML index and pages), not only in the participant
list; the manifest lists each redaction with its field. A package that
cannot be made leaves nothing behind: ``--out`` is created only after the
case (and the key to seal to) have been checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from vault import dsarpack
from vault_kit import Chain, conv, outbox, stick

OTHER_TRACES = ("Ana Example", "ana example", "U0ANA123", "ana.example", "ANA.EXAMPLE",
                "7700 900456", "447700900456", "cust-ana-77")


@pytest.fixture
def shared_chat(pair: Pair, tmp_path: Path) -> Pair:
    """Mara (the subject) and Ana (another customer) in one chat named after Ana."""
    chat = conv("t1", ["Ana Example told me to write; ping <@U0ANA123> or "
                       "https://crm.example/?e=ana.example%40example.org",
                       "Noted", "hello from ana example", "ok"],
                title="Ana Example", channel="Chat with Ana Example", status="open",
                tags=["vip", "Ana Example"])
    chat["participants"].append({"id": "Ana Example", "role": "customer",
                                 "name": "Ana Example", "phone": "+44 7700 900456",
                                 "customer_id": "cust-ana-77",
                                 "platform_ids": {"slack": "U0ANA123"}})
    chat["messages"][2]["from"] = "Ana Example"
    chat["messages"][0]["attachments"] = [{"name": "Ana Example passport.pdf",
                                           "type": "application/pdf",
                                           "text": "scan for cust-ana-77"}]
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([chat])
    from vault import ingest

    ingest.ingest_media(pair.vault_path, media)
    return pair


def _case(cli: Any, pair: Pair) -> str:
    r = cli("dsar", "open", "--received", "2024-09-02", "--email", "mara.quint@example.org",
            "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return str(r.json()["case_id"])


def test_another_customer_is_redacted_in_every_field_shown(shared_chat: Pair,
                                                           tmp_path: Path, cli: Any) -> None:
    case = _case(cli, shared_chat)
    r = cli("dsar", "export", case, "--out", tmp_path / "out", "--json", "--home",
            shared_chat.vault_path)
    assert r.code == 0, r.err
    pkg = Path(r.json()["path"])  # type: ignore

    everything = "\n".join(p.read_text("utf-8") for p in pkg.rglob("*") if p.is_file())
    for trace in OTHER_TRACES:
        assert trace not in everything, trace
    [c] = json.loads((pkg / "data.json").read_text())["conversations"]
    assert c["title"] == "[other customer]"
    assert c["channel"] == "Chat with [other customer]"
    assert c["participants"][-1] == {"id": "other-customer-1", "role": "customer",
                                     "name": "[other customer]"}
    assert c["messages"][2]["from"] == "other-customer-1"
    assert c["messages"][0]["attachments"][0]["name"] == "[other customer] passport.pdf"
    assert c["messages"][0]["text"].startswith("[other customer] told me to write; ping "
                                               "<@[other customer]>")
    # The subject's own data stays.
    assert "Mara Quint" in everything and "mara.quint@example.org" in everything
    index = (pkg / "index.html").read_text()
    assert "<td>Chat with [other customer]</td>" in index
    page = (pkg / "conversations" / "0001.html").read_text()
    assert "<h1>Conversation 1: [other customer]</h1>" in page

    manifest = json.loads((pkg / "manifest.json").read_text())
    fields = {(e.get("field"), e["kind"]) for e in manifest["redactions"]}
    assert {("title", "name"), ("channel", "name"), ("attachment.name", "name"),
            ("attachment.text", "identifier"), ("text", "email"),
            ("text", "identifier")} <= fields
    assert all("Ana" not in json.dumps(e) for e in manifest["redactions"])


def test_an_unknown_case_creates_nothing(pair: Pair, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "new" / "folder"
    r = cli("dsar", "export", "DSAR-2024-0099", "--out", out, "--home", pair.vault_path)
    assert r.code == 2 and "no DSAR case" in r.err
    assert not (tmp_path / "new").exists()


def test_a_bad_key_to_seal_to_creates_nothing(shared_chat: Pair, tmp_path: Path,
                                              cli: Any) -> None:
    case = _case(cli, shared_chat)
    r = cli("dsar", "export", case, "--out", tmp_path / "out", "--seal-to",
            tmp_path / "missing.pub", "--home", shared_chat.vault_path)
    assert r.code == 5 and "missing.pub" in r.err and "public key" in r.err
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_removes_what_it_made(shared_chat: Pair, tmp_path: Path,
                                                      cli: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    case = _case(cli, shared_chat)
    real = dsarpack.build

    def half_then_fail(*args: Any) -> Any:
        real(*args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dsarpack, "build", half_then_fail)
    r = cli("dsar", "export", case, "--out", tmp_path / "a" / "b", "--home",
            shared_chat.vault_path)
    assert r.code != 0
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    r = cli("dsar", "export", case, "--out", kept, "--home", shared_chat.vault_path)
    assert r.code != 0 and kept.is_dir() and list(kept.iterdir()) == []


def test_a_participant_id_that_is_a_plain_word_is_not_replaced_in_text(
        pair: Pair, tmp_path: Path, cli: Any) -> None:
    from vault import ingest

    chat = conv("w1", ["the customer service was quick", "glad to hear"])
    chat["participants"].append({"id": "customer", "role": "customer", "name": "Bo Other"})
    chat["messages"].append({"id": "m9", "at": chat["started_at"], "from": "customer",
                             "text": "Bo Other here"})
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([chat])
    ingest.ingest_media(pair.vault_path, media)
    r = cli("dsar", "export", _case(cli, pair), "--out", tmp_path / "out", "--json",
            "--home", pair.vault_path)
    data = json.loads((Path(r.json()["path"]) / "data.json").read_text())  # type: ignore
    [c] = data["conversations"]
    assert c["messages"][0]["text"] == "the customer service was quick"
    assert c["messages"][2] == {"id": "m9", "at": chat["started_at"],
                                "from": "other-customer-1", "text": "[other customer] here"}


def test_the_manifest_names_ids_as_shown_never_as_they_were(pair: Pair, tmp_path: Path,
                                                            cli: Any) -> None:
    """Its redaction log must not give back an address an id held."""
    from vault import ingest

    chat = conv("olaf@example.org-2026", ["Olaf wrote to me", "noted"])
    chat["participants"].append({"id": "olaf", "role": "customer", "name": "Olaf Other",
                                 "email": "olaf@example.org"})
    chat["messages"][1]["id"] = "m-olaf@example.org-1"
    media = stick(tmp_path / "stick")
    Chain(pair, outbox(media)).seal([chat])
    ingest.ingest_media(pair.vault_path, media)
    r = cli("dsar", "export", _case(cli, pair), "--out", tmp_path / "out", "--json", "--home",
            pair.vault_path)
    assert r.code == 0, r.err
    pkg = Path(r.json()["path"])  # type: ignore
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["redactions"], "nothing was redacted: the test proves nothing"
    for p in pkg.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".html"):
            assert "olaf@example.org" not in p.read_text("utf-8"), p.name
    shown = {e["conversation_id"] for e in manifest["redactions"]}
    assert shown == {"[e-mail redacted]-2026"}
