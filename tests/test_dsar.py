"""DSAR cases (due dates, extensions, list, vault status) and packages.

A package must validate against its schema, open offline (no script, no
external resource, hostile chat text escaped), carry SHA-256 of every file
that match, hold the subject's attachments, and let no other customer's
identifier through.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import Pair, run_cli
from gdpr_kit import blob
from vault import dsar, dsarpack, ingest, vaultstatus
from vault_kit import Chain, conv, outbox, stick

HOSTILE = '<script>alert("x")</script><img src="http://evil.example/t.gif"> & "quotes"'


@pytest.mark.parametrize("received,due", [
    ("2024-01-15", "2024-02-15"), ("2024-01-31", "2024-02-29"), ("2023-01-31", "2023-02-28"),
    ("2024-03-31", "2024-04-30"), ("2024-12-31", "2025-01-31"), ("2024-08-31", "2024-09-30"),
])
def test_due_is_the_same_day_next_month_or_its_last_day(received: str, due: str) -> None:
    assert dsar.add_months(date.fromisoformat(received), 1).isoformat() == due


@pytest.fixture
def shop(pair: Pair, tmp_path: Path) -> tuple[Pair, str]:
    """Mara's chats, one with another customer present, one hostile, one attachment."""
    sha, content = blob(os.urandom(2048))
    media_root = stick(tmp_path / "stick")
    group = conv("g1", ["hi, Ben Sample here, reach me at ben.sample@example.org "
                        "or +44 7700 900456", "and I am Mara", HOSTILE])
    group["participants"].append({"id": "c2", "role": "customer", "name": "Ben Sample",
                                  "email": "ben.sample@example.org",
                                  "phone": "+44 7700 900456"})
    group["messages"][0]["from"] = "c2"
    group["messages"][1]["from"] = "c1"
    group["messages"][1]["attachments"] = [{"sha256": sha, "name": "photo.JPG",
                                            "type": "image/jpeg", "size": 2048}]
    Chain(pair, outbox(media_root)).seal([
        group,
        conv("w2", ["Thanks Ines Duarte", "You're welcome"]),
        conv("w3", ["my friend mara.quint@example.org had this too", "noted"],
             email="zed@example.org", phone=None),
        conv("w4", ["unrelated"], email="zed@example.org", phone=None),
    ], blobs={sha: content})
    ingest.ingest_media(pair.vault_path, media_root)
    return pair, sha


def _open(pair: Pair, received: str = "2024-09-02", *extra: str) -> str:
    r = run_cli("dsar", "open", "--received", received, "--email", "Mara.Quint@example.org",
                "--phone", "07700 900123", *extra, "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    out = r.json()
    assert isinstance(out["case_id"], str)  # type: ignore
    return out["case_id"]  # type: ignore


def test_open_extend_list_close(shop: tuple[Pair, str]) -> None:
    pair, _ = shop
    home = ("--home", str(pair.vault_path))
    case = _open(pair, "2024-01-31")
    assert case == "DSAR-2024-0001"
    [item] = run_cli("dsar", "list", "--json", *home).json()["cases"]  # type: ignore
    assert item["due"] == "2024-02-29" and item["overdue"] is True

    ext = run_cli("dsar", "extend", case.lower(), "--months", "2", "--reason", "complex",
                  "--json", *home)  # ids typed in any case
    assert ext.code == 0 and ext.json()["effective_due"] == "2024-04-30"  # type: ignore
    more = run_cli("dsar", "extend", case, "--months", "1", "--reason", "more", *home)
    assert more.code == 2 and "at most 2 months" in more.err

    assert run_cli("dsar", "close", case, "--note", "answered", *home).code == 0
    assert run_cli("dsar", "list", "--json", *home).json()["cases"] == []  # type: ignore
    assert run_cli("dsar", "open", "--received", "2999-01-01", "--email", "a@b.org",
                   *home).code == 2
    # a name alone could never be exported: refused when the case is opened, not at its deadline
    named = run_cli("dsar", "open", "--received", "2024-09-02", "--name", "Mara Quint", *home)
    assert named.code == 2 and "needs an identifier" in named.err
    assert run_cli("dsar", "list", "--json", *home).json()["cases"] == []  # type: ignore


def test_vault_status_warns_then_goes_critical(shop: tuple[Pair, str]) -> None:
    pair, _ = shop
    _open(pair, "2024-09-02")  # due 2024-10-02

    def level(day: str) -> tuple[str, list[str]]:
        rep = vaultstatus.report(pair.vault_path, now=datetime.fromisoformat(day + "T12:00+00:00"))
        return rep["status"], [f["level"] for f in rep["findings"] if f["check"] == "dsar"]

    assert level("2024-09-10")[1] == []
    assert level("2024-09-26")[1] == ["WARNING"]
    assert level("2024-10-03") == ("CRITICAL", ["CRITICAL"])


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _export(pair: Pair, tmp_path: Path, case: str, *extra: str) -> dict[str, Any]:
    r = run_cli("dsar", "export", case, "--out", tmp_path / "out", *extra, "--json",
                "--home", pair.vault_path)
    assert r.code == 0, r.err
    return r.json()  # type: ignore


def test_package_is_complete_valid_and_fair_to_others(shop: tuple[Pair, str],
                                                      tmp_path: Path) -> None:
    pair, sha = shop
    case = _open(pair)
    result = _export(pair, tmp_path, case)
    pkg = Path(result["path"])

    data = json.loads((pkg / "data.json").read_text())
    jsonschema.validate(data, json.loads((pkg / "schema" / "dsar-package.schema.json")
                                         .read_text()))
    assert sorted(c["conversation_id"] for c in data["conversations"]) == ["g1", "w2", "w3"]
    [w3] = [c for c in data["conversations"] if c["conversation_id"] == "w3"]
    assert w3["subject_role"] == "mentioned" and len(w3["messages"]) == 1

    manifest = json.loads((pkg / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
    assert listed == on_disk - {"manifest.json"}
    for f in manifest["files"]:
        assert dsar.sha256_file(pkg / f["path"]) == f["sha256"], f["path"]
    assert f"attachments/{sha}.jpg" in listed

    everything = "\n".join(p.read_text("utf-8", "replace") for p in pkg.rglob("*")
                           if p.is_file())
    for other in ("ben.sample@example.org", "7700 900456", "+447700900456", "Ben Sample",
                  "zed@example.org"):
        assert other not in everything, other
    assert "mara.quint@example.org" in everything  # the subject's own data stays
    kinds = {r["kind"] for r in manifest["redactions"]}
    assert {"email", "phone", "other_customer", "name"} <= kinds
    assert all(set(r) <= {"conversation_id", "message_id", "participant_id", "field",
                          "kind", "replacement", "count"} for r in manifest["redactions"])
    assert "Ines Duarte" in everything  # agents' names kept by default


def test_html_opens_offline_and_runs_nothing(shop: tuple[Pair, str], tmp_path: Path) -> None:
    pair, _ = shop
    pkg = Path(_export(pair, tmp_path, _open(pair))["path"])
    pages = [pkg / "index.html", *sorted((pkg / "conversations").glob("*.html"))]
    assert len(pages) == 4
    for page in pages:
        text = page.read_text()
        parser = _Tags()
        parser.feed(text)
        tags = [t for t, _ in parser.tags]
        assert "script" not in tags and "img" not in tags and "iframe" not in tags
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        for _, attrs in parser.tags:
            for name in ("href", "src"):
                target = attrs.get(name)
                if target is not None:
                    assert not re.match(r"^[a-z]+:|^//", target), target
                    assert (page.parent / target).resolve().is_file(), target
    joined = "".join(p.read_text() for p in pages)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in joined


def test_agent_names_redacted_by_config(shop: tuple[Pair, str], tmp_path: Path) -> None:
    pair, _ = shop
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace("redact_agent_names = false",
                                           "redact_agent_names = true"))
    pkg = Path(_export(pair, tmp_path, _open(pair))["path"])
    everything = "".join(p.read_text("utf-8", "replace") for p in pkg.rglob("*.*"))
    assert "Ines Duarte" not in everything and "Agent 1" in everything
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert any(r["kind"] == "agent_name" for r in manifest["redactions"])


def test_processing_register_goes_into_the_package(shop: tuple[Pair, str],
                                                   tmp_path: Path) -> None:
    pair, _ = shop
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text().replace(
        "[processing]", '[processing]\npurposes = ["customer support", "complaints"]\n'
                        'recipients = "none outside the company"\n'))
    pkg = Path(_export(pair, tmp_path, _open(pair))["path"])
    data = json.loads((pkg / "data.json").read_text())
    assert data["processing"]["purposes"] == ["customer support", "complaints"]
    assert data["processing"]["rights"] is None
    assert "customer support" in (pkg / "index.html").read_text()
    cfg.write_text(cfg.read_text() + 'colour = "blue"\n')
    bad = run_cli("dsar", "export", "DSAR-2024-0001", "--out", tmp_path / "o2",
                  "--home", pair.vault_path)
    assert bad.code == 2 and "processing.colour" in bad.err


def test_sealed_package_opens_to_the_same_files(shop: tuple[Pair, str], tmp_path: Path) -> None:
    pair, _ = shop
    case = _open(pair)
    plain = Path(_export(pair, tmp_path / "plain", case)["path"])
    result = _export(pair, tmp_path, case, "--seal-to", str(pair.exporter.public_key))
    sealed = Path(result["sealed"])
    assert sorted(p.name for p in sealed.parent.iterdir()) == [sealed.name]

    opened = dsarpack.unseal(sealed, pair.exporter.identity(), pair.exporter.trust(),
                             tmp_path / "opened")
    manifest = json.loads((opened / "manifest.json").read_text())
    for f in manifest["files"]:
        assert dsar.sha256_file(opened / f["path"]) == f["sha256"]
    assert {f["path"] for f in manifest["files"]} == {
        p.relative_to(plain).as_posix() for p in plain.rglob("*") if p.is_file()} - {
        "manifest.json"}


def test_a_sealed_package_is_opened_online_by_a_command(shop: tuple[Pair, str],
                                                       tmp_path: Path) -> None:
    """--seal-to is only useful if the online side can open it: 'dsar unseal' does."""
    pair, _ = shop
    case = _open(pair)
    sealed = _export(pair, tmp_path, case, "--seal-to", str(pair.exporter.public_key))["sealed"]
    out = tmp_path / "opened"
    r = run_cli("dsar", "unseal", sealed, "--out", out, "--json", "--home", pair.exporter_path)
    assert r.code == 0, r.err
    target = out / case
    assert r.json() == {"path": str(target), "case_id": case, "files": r.json()["files"]}
    manifest = json.loads((target / "manifest.json").read_text())
    for f in manifest["files"]:
        assert dsar.sha256_file(target / f["path"]) == f["sha256"]
    assert [p.name for p in out.iterdir()] == [case]  # no temporary folder left
    again = run_cli("dsar", "unseal", sealed, "--out", out, "--home", pair.exporter_path)
    assert again.code == 2 and "already exists" in again.err
    flipped = bytearray(Path(sealed).read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    bad = tmp_path / "bad.cvb"
    bad.write_bytes(bytes(flipped))
    refused = run_cli("dsar", "unseal", bad, "--out", tmp_path / "new" / "inner",
                      "--home", pair.exporter_path)
    assert refused.code == 3, refused.err
    assert not (tmp_path / "new").exists(), "a refused unseal leaves no folder behind"


def test_exports_are_audited(shop: tuple[Pair, str], tmp_path: Path) -> None:
    pair, _ = shop
    case = _open(pair)
    _export(pair, tmp_path, case)
    r = run_cli("audit", "show", "--action", "dsar*", "--json", "--home", pair.vault_path)
    actions = [e["action"] for e in r.json()["entries"]]  # type: ignore
    assert actions == ["dsar.export", "dsar.open"]
