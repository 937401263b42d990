"""Subject find over the corpus, exported and ingested through the real code path.

Every corpus file with a reader is a source of an exporter home
(``export_kit.make_site``); the real exporter seals them onto a stick, the
vault ingests the stick, and ``chatvault subject find`` is asked as a DPO
asks: the same person written otherwise must be found, someone else must not.

People from the corpus: Intercom's agent John Doe (admin@example.com; the
WhatsApp and Instagram files hold other people named John Doe), the
Freshdesk agent who replies from support@example.com, and the WhatsApp
author "+12 345 578", the only phone number in the platform exports (too few
digits to be a possible number, so it is held as digits and matched for
review). The platform exports hold no possible phone number, so the phone
forms are checked on the canonical-JSONL path, with a conversation derived
from a corpus person: ABCD's Crystal Minh (customer_service_datasets/
abcd_sample.json, convo 3592; a research dataset with no reader), who gives
"(977) 625-2661", a US number written nationally, next to ABCD's Alessandro
Phoenix ((727) 760-7806, convo 9489) as the different person.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from conftest_readers import CORPUS
from export_kit import Site, add_source, make_site
from vault import ingest, store

READ = [("botframework/addItemWithButton.transcript", "botframework"),
        ("botframework/cli.sample.transcript", "botframework"),
        ("facebook_messenger/facebook_chat.json", "messenger"),
        ("freshdesk_webchat/web_chat_ticket_with_conversations.json", "freshdesk"),
        ("instagram_messenger/testlog.json", "messenger"),
        ("intercom/conversation_part_redacted.json", "intercom"),
        ("rasa/tracker_moodbot.json", "rasa"),
        ("slack/slack_export.zip", "slack"),
        ("telegram/result.json", "telegram"),
        ("telegram/test_batch_export.json", "telegram"),
        ("whatsapp/testlog.txt", "whatsapp"),
        ("whatsapp/whatsapp_chat.txt", "whatsapp")]
ABCD = "customer_service_datasets/abcd_sample.json"
REGION = "US"  # the JSONL source's phone_region, and the vault's


def _abcd_conversation(convo: dict[str, Any]) -> dict[str, Any]:
    """An ABCD dialogue as a canonical conversation: the customer with the e-mail and
    phone the dataset gives (as written there), the agent, the turns in order (the
    dataset's "action" turns as system events); ABCD has no times, so one a minute."""
    person = convo["scenario"]["personal"]
    customer: dict[str, Any] = {"id": "customer", "role": "customer",
                                "name": person["customer_name"].title(),
                                "phone": person["phone"]}
    if person.get("email"):
        customer["email"] = person["email"]
    msgs = []
    for n, (speaker, text) in enumerate(convo["original"]):
        msg: dict[str, Any] = {"id": str(n), "at": f"2024-03-14T09:{n:02d}:00Z",
                               "text": text, "from": speaker if speaker != "action" else None}
        if speaker == "action":
            msg["system"] = True
        msgs.append(msg)
    return {"conversation_id": f"abcd-{convo['convo_id']}",
            "started_at": "2024-03-14T09:00:00Z",
            "participants": [customer, {"id": "agent", "role": "agent"}], "messages": msgs}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    missing = [p for p, _ in READ if not (CORPUS / p).is_file()]
    if missing or not (CORPUS / ABCD).is_file():
        pytest.skip(f"corpus files not present: {missing or ABCD}")
    from vault import exporter

    root = tmp_path_factory.mktemp("corpus")
    abcd = json.loads((CORPUS / ABCD).read_text("utf-8"))
    derived = [_abcd_conversation(c) for c in abcd if c["convo_id"] in (3592, 9489)]
    made = make_site(root, convs=derived, phone_region=REGION)
    for n, (path, fmt) in enumerate(READ):
        add_source(made, f"c{n:02d}-{fmt}", CORPUS / path, fmt)
    vault = made.vaults[0]
    cfg = vault.config.read_text()
    assert 'phone_region = "GB"' in cfg
    vault.config.write_text(cfg.replace('phone_region = "GB"', f'phone_region = "{REGION}"'))

    report = exporter.run(made.exporter.path, media=made.stick)
    assert report.exit_code == 0, report
    outcomes = ingest.ingest_media(vault.path, made.stick)
    assert len(outcomes) == 1 + len(READ)
    assert all(o.status == "ingested" for o in outcomes), outcomes
    return made


def _source(path: str) -> str:
    n, fmt = next((n, f) for n, (p, f) in enumerate(READ) if p == path)
    return f"c{n:02d}-{fmt}"


def find(site: Site, *args: str) -> list[tuple[str, str, str]]:
    """(source, conversation id, match) of each conversation ``subject find`` gives."""
    r = run_cli("subject", "find", *args, "--json", "--home", site.vaults[0].path)
    assert r.code == 0, r.err
    out: Any = r.json()
    return sorted((x["source"], x["conversation_id"], x["match"]) for x in out["results"])


def test_everything_was_ingested(site: Site) -> None:
    with store.open_store(site.vaults[0].path / store.FILE_NAME) as conn:
        per_source = dict(conn.execute("SELECT source, count(*) FROM conversations "
                                       "GROUP BY source").fetchall())
    # 1 conversation per corpus file, 3 for the Slack export, 2 derived from ABCD
    assert per_source == {**{_source(p): 1 for p, _ in READ},
                          _source("slack/slack_export.zip"): 3, "web": 2}


INTERCOM = (_source("intercom/conversation_part_redacted.json"), "215472621202693")
FRESHDESK = (_source("freshdesk_webchat/web_chat_ticket_with_conversations.json"),
             "ticket-2101")
CRYSTAL = ("web", "abcd-3592")
ALESSANDRO = ("web", "abcd-9489")


@pytest.mark.parametrize("email,where", [
    # Intercom's agent John Doe, not the WhatsApp and Instagram John Does
    ("ADMIN@EXAMPLE.COM", INTERCOM), ("Admin@Example.com", INTERCOM),
    (" <admin@example.com> ", INTERCOM),
    # the Freshdesk agent's from_email (on the participant since the reader maps it)
    ("SUPPORT@EXAMPLE.COM", FRESHDESK), ("support@example.com", FRESHDESK),
    ("mailto:Support@Example.COM", FRESHDESK),
    # the ABCD person (participant and written in a message)
    ("CMINH730@EMAIL.COM", CRYSTAL),
])
def test_email_written_otherwise_finds_the_person(site: Site, email: str,
                                                  where: tuple[str, str]) -> None:
    assert find(site, "--email", email) == [(*where, "exact")]


def test_other_emails_find_nobody(site: Site) -> None:
    # the same local part at another domain, another local part at the same domain
    for email in ("admin@example.org", "support@example.org", "john.doe@example.com",
                  "cminh731@email.com"):
        assert find(site, "--email", email) == [], email


@pytest.mark.parametrize("phone", [
    "977 625 2661",  # spaces
    "977-625-2661",  # dashes
    "(977) 625-2661",  # national, as ABCD writes it, read with the source's region
    "9776252661",  # national, digits only
    "+1 977 625 2661",  # international
    "+1-977-625-2661",
    "+19776252661",  # E.164
    "001 977 625 2661",  # 00 international prefix
])
def test_phone_written_otherwise_finds_the_person(site: Site, phone: str) -> None:
    assert find(site, "--phone", phone) == [(*CRYSTAL, "exact")]


def test_other_phones_find_nobody_else(site: Site) -> None:
    assert find(site, "--phone", "(727) 760-7806") == [(*ALESSANDRO, "exact")]
    # one digit off, the same digits in another country
    for phone in ("(977) 625-2662", "+44 977 625 2661", "+49 977 625 2661"):
        assert find(site, "--phone", phone) == [], phone


@pytest.mark.parametrize("phone", ["+12 345 578", "+12-345-578", "+12345578",
                                   "0012 345 578"])
def test_whatsapp_author_named_by_a_number_is_found_for_review(site: Site,
                                                              phone: str) -> None:
    # "+12 345 578" has too few digits to be a possible number: the vault holds its
    # digits and a lookup by the same digits is a match that needs review, never exact
    assert find(site, "--phone", phone) == [(_source("whatsapp/testlog.txt"),
                                             _testlog_id(site), "needs review")]
    assert find(site, "--phone", phone.replace("578", "579")) == []


def _testlog_id(site: Site) -> str:
    with store.open_store(site.vaults[0].path / store.FILE_NAME) as conn:
        [(cid,)] = conn.execute("SELECT conversation_id FROM conversations WHERE source = ?",
                                (_source("whatsapp/testlog.txt"),)).fetchall()
    return str(cid)
