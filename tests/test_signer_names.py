"""Refused signers are named by fingerprint, as ``keys list`` and ``keys show`` print it.

A fingerprint covers both public keys; bundles and documents carry only the
signing key, so an unknown signer is named by the fingerprint it claims, and
a claim to be a trusted key made with another key is called what it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import bundle_forge as forge
from conftest import Pair, make_pair, run_cli
from vault import keys, signed
from vault.errors import UntrustedSigner
from vault_kit import Chain, conv, outbox, stick

FINGERPRINT = re.compile(r"\b[A-Z2-7]{4}(-[A-Z2-7]{4}){5}\b")


@pytest.fixture
def stranger(tmp_path: Path) -> Pair:
    """Another site whose exporter the vault of ``pair`` has never heard of."""
    return make_pair(tmp_path / "stranger")


def _shown_fingerprint(home: Path) -> str:
    res = run_cli("keys", "show", "--home", home, "--json")
    assert res.code == 0, res.err
    return str(res.json()["fingerprint"])  # type: ignore[index]


def test_unknown_bundle_signer_is_named_as_keys_show_prints_it(pair: Pair,
                                                               stranger: Pair) -> None:
    sealed = Chain(stranger, stranger.root / "b").seal([conv("s1", ["hi"])])
    res = run_cli("bundle", "verify", sealed.path, "--home", pair.vault_path)
    assert res.code == 4
    shown = _shown_fingerprint(stranger.exporter_path)
    assert f"it claims fingerprint {shown};" in res.err
    assert "keys trust PUBFILE --role exporter" in res.err
    assert "signing key" not in res.err and stranger.exporter.public().sign_pk.hex()[:16] \
        not in res.err


def test_a_refused_bundle_signer_names_the_file_as_given(pair: Pair, stranger: Pair) -> None:
    """The file as the operator gave it, in the line and as ``path`` in --json."""
    sealed = Chain(stranger, stranger.root / "b").seal([conv("s1", ["hi"])])
    res = run_cli("bundle", "verify", sealed.path, "--home", pair.vault_path, "--json")
    assert res.code == 4
    out = res.json()
    assert out["error"] == "untrusted_signer"  # type: ignore[index]
    assert out["path"] == str(sealed.path)  # type: ignore[index]
    res = run_cli("bundle", "open", sealed.path, "--home", pair.vault_path, "-o",
                  pair.root / "o.jsonl")
    assert res.err.startswith(f"chatvault: {sealed.path}: signer is not in the trust store")


def test_ingest_names_the_unknown_signer_too(pair: Pair, stranger: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    Chain(stranger, outbox(media_root)).seal([conv("s1", ["who am I"])], source="cases")
    res = run_cli("vault", "ingest", media_root, "--home", pair.vault_path, "--json")
    assert res.code == 4
    [outcome] = res.json()["outcomes"]  # type: ignore[index]
    assert stranger.exporter.public().fingerprint in outcome["reason"]


def test_a_trusted_name_on_another_key_is_called_a_forgery(pair: Pair) -> None:
    """Mallory re-signs the exporter's bundle: its header still claims the exporter."""
    sealed = Chain(pair, pair.root / "b").seal([conv("c1", ["hi"])])
    parts = forge.split(sealed.path.read_bytes())
    mallory = keys.generate("mallory", "exporter")
    header = bytearray(parts.header)
    header[40:72] = mallory.sign_pk
    parts.header = bytes(header)
    forged = forge.write(pair.root / "u.cvb", parts.assemble(mallory))
    res = run_cli("bundle", "verify", forged, "--home", pair.vault_path)
    assert res.code == 4
    exporter = pair.exporter.public().fingerprint
    assert (f"claims to be {exporter} (test-exporter) but is signed with another key"
            in res.err)
    assert "keys trust" not in res.err  # trusting it would be the wrong advice


def _document(signer: keys.Identity) -> dict[str, Any]:
    return signed.sign({"kind": "receipt", "n": 1}, signer)


def test_unknown_document_signer_is_named_by_fingerprint(pair: Pair, stranger: Pair) -> None:
    doc = _document(stranger.vault.identity())
    with pytest.raises(UntrustedSigner) as info:
        signed.verify(doc, pair.exporter.trust(), "vault", "receipt", "r.json")
    message = str(info.value)
    assert f"it claims fingerprint {stranger.vault.public().fingerprint};" in message
    assert "--role vault" in message


def test_a_claim_that_is_no_fingerprint_falls_back_to_the_key(pair: Pair,
                                                              stranger: Pair) -> None:
    doc = _document(stranger.vault.identity())
    doc["signatures"][0]["signer"] = "not a fingerprint"
    with pytest.raises(UntrustedSigner) as info:
        signed.verify(doc, pair.exporter.trust(), "vault", "receipt", "r.json")
    assert "names no fingerprint" in str(info.value)
    assert stranger.vault.public().sign_pk.hex()[:16] in str(info.value)
    assert not FINGERPRINT.search(str(info.value))


def test_revoked_and_wrong_role_signers_are_named_by_fingerprint(pair: Pair) -> None:
    sealed = Chain(pair, pair.root / "b").seal([conv("c1", ["hi"])])
    exporter = pair.exporter.public().fingerprint
    res = run_cli("bundle", "verify", sealed.path, "--home", pair.vault_path, "--role", "dpo")
    assert res.code == 4 and exporter in res.err
    t = pair.vault.trust()
    t.revoke(exporter)
    t.save()
    res = run_cli("bundle", "verify", sealed.path, "--home", pair.vault_path)
    assert res.code == 4 and f"{exporter} (test-exporter) was revoked" in res.err
