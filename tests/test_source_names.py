"""Source names name files and folders: one with a final newline or a path in it never passes.

A ``$`` pattern also matches before a final newline, so ``web\\n`` passed the
exporter's config check (bundle files named with a newline, which a vault
never reads from a stick) and the vault's chain check (an archive folder
named with a newline). ``bundle seal`` sealed any ``--source``, and ``bundle
verify`` said OK for bundles a vault quarantines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Pair
from export_kit import make_site
from vault import bundle, canonical, chain, timestamps

CONV = {"conversation_id": "c-1", "started_at": "2024-03-14T09:05:12Z",
        "participants": [{"id": "p1", "role": "customer"}],
        "messages": [{"id": "m1", "at": "2024-03-14T09:05:12Z", "from": "p1", "text": "Hi"}]}
BAD_NAMES = ["web\n", "../web", "a/b", ""]


def _jsonl(root: Path) -> Path:
    path = root / "in.jsonl"
    path.write_bytes(canonical.dumps(CONV) + b"\n")
    return path


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bundle_seal_refuses_a_source_no_vault_takes(pair: Pair, cli, name: str) -> None:
    out = pair.root / "x.cvb"
    res = cli("bundle", "seal", _jsonl(pair.root), "--home", pair.exporter_path, "--to",
              pair.vault.public_key, "--source", name, "--seq", "1", "-o", out)
    assert res.code == 2, res.err
    assert "not a source name" in res.err
    assert not out.exists()


@pytest.mark.parametrize("name", ["web\n", "../web"])
def test_bundle_verify_and_open_check_the_chain_fields(pair: Pair, cli, name: str) -> None:
    sealed = bundle.seal_jsonl(_jsonl(pair.root), pair.root / "x.cvb",
                               pair.exporter.identity(), [pair.vault.public()],
                               source=name, sequence=1)
    res = cli("bundle", "verify", sealed.path, "--home", pair.vault_path, "--json")
    assert res.code == 3, res.out
    assert res.json()["error"] == "malformed_header"
    out = pair.root / "out.jsonl"
    res = cli("bundle", "open", sealed.path, "--home", pair.vault_path, "-o", out)
    assert res.code == 3, res.err
    assert "source name" in res.err
    assert not out.exists()


def test_the_vault_chain_check_refuses_a_final_newline() -> None:
    meta = {"kind": "export", "source": "web\n", "sequence": 1, "prev_hash": None,
            "created_at": "2024-03-14T09:05:12Z"}
    with pytest.raises(Exception, match="source name"):
        chain.checked_meta(meta, "web-00000001.cvb")
    meta.update(source="web", prev_hash="a" * 64 + "\n")
    with pytest.raises(Exception, match="prev_hash"):
        chain.checked_meta(meta, "web-00000001.cvb")
    assert chain.source_name_ok("web-1.a_b")
    assert not timestamps.is_canonical("2024-03-14T09:05:12Z\n")


def test_export_config_refuses_a_name_ending_in_a_newline(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    text = site.exporter.config.read_text()
    assert 'name = "web"' in text
    site.exporter.config.write_text(text.replace('name = "web"', 'name = "web\\n"', 1))
    res = cli("export", "check-config", "--home", site.exporter.path, "--json")
    assert res.code == 2, res.out
    assert any(e["message"].startswith("key 'sources[0].name'") and
               "not usable in file names" in e["message"] for e in res.json()["errors"])
