"""Homes, identities, passphrases, paper backups and the trust store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conftest import Pair
from vault import home, keys, paper
from vault.errors import (BadKeyFile, BadPassphrase, HomeExists, PassphraseNeeded, RevokedSigner,
                          UntrustedSigner, WrongRole)


def test_init_creates_home_with_private_secret(tmp_path: Path, cli) -> None:
    r = cli("init", "vault", tmp_path / "v", "--name", "vault-a", "--json")
    assert r.code == 0, r.err
    info = r.json()
    secret = tmp_path / "v" / "keys" / "secret.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert info["fingerprint"] in secret.read_text()
    assert info["fingerprint"] in (tmp_path / "v" / "keys" / "public.key").read_text()
    for sub in ("archive", "quarantine", "config.toml", "trust.json"):
        assert (tmp_path / "v" / sub).exists()
    assert "[daemon]" in (tmp_path / "v" / "config.toml").read_text()


def test_init_refuses_existing_home(tmp_path: Path, cli) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "precious").write_text("keep me")
    r = cli("init", "exporter", tmp_path / "h", "--name", "x")
    assert r.code == 4
    assert "refusing" in r.err
    assert (tmp_path / "h" / "precious").read_text() == "keep me"
    with pytest.raises(HomeExists):
        home.create("exporter", tmp_path / "h", "x")


def test_passphrase_wrapping(tmp_path: Path, cli) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    r = cli("init", "exporter", tmp_path / "e", "--name", "e", "--passphrase-file", pw)
    assert r.code == 0, r.err
    text = (tmp_path / "e" / "keys" / "secret.key").read_text()
    assert "argon2id-secretbox" in text
    h = home.Home(tmp_path / "e")
    with pytest.raises(PassphraseNeeded) as needed:
        h.identity()
    assert needed.value.exit_code == 2 and "CHATVAULT_PASSPHRASE_FILE" in needed.value.detail
    wrong = tmp_path / "wrong"
    wrong.write_text("incorrect")
    with pytest.raises(BadPassphrase):
        h.identity(wrong)
    assert h.identity(pw).fingerprint == h.public().fingerprint


def test_cheap_kdf_only_inside_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keys.kdf_limits()[1] < keys._KDF_MEM
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert keys.kdf_limits() == (keys._KDF_OPS, keys._KDF_MEM)


def test_keys_show_json(pair: Pair, cli) -> None:
    r = cli("keys", "show", "--home", pair.vault_path, "--json")
    assert r.code == 0
    info = r.json()
    assert info["role"] == "vault" and info["name"] == "test-vault"
    r2 = cli("keys", "show", pair.vault.public_key, "--json")
    assert r2.json() == info


def test_edited_public_key_is_refused(pair: Pair, tmp_path: Path) -> None:
    text = pair.vault.public_key.read_text()
    forged = tmp_path / "forged.pub"
    forged.write_text(text.replace("Name: test-vault", "Name: evil-vault"))
    with pytest.raises(BadKeyFile, match="self-signature"):
        keys.load_public(forged)
    lines = text.splitlines()
    sign_line = next(i for i, ln in enumerate(lines) if ln.startswith("Sign-Ed25519"))
    other = keys.generate("o", "vault")
    lines[sign_line] = "Sign-Ed25519: " + keys._b64(other.sign_pk)
    forged.write_text("\n".join(lines))
    with pytest.raises(BadKeyFile, match="fingerprint"):
        keys.load_public(forged)


def test_paper_round_trip_into_new_home(pair: Pair, tmp_path: Path, cli) -> None:
    r = cli("keys", "export-paper", "--home", pair.vault_path)
    assert r.code == 0
    sheet = tmp_path / "paper.txt"
    # typed back in lower case with odd spacing: still fine
    typed = [ln.lower().replace(" ", "  ") if ln[:2].isdigit() else ln
             for ln in r.out.splitlines()]
    sheet.write_text("\n".join(typed))
    r = cli("keys", "import-paper", sheet, "--home", tmp_path / "restored", "--json")
    assert r.code == 0, r.err
    assert r.json()["fingerprint"] == pair.vault.public().fingerprint
    restored = home.Home(tmp_path / "restored")
    assert restored.public_key.read_text() == pair.vault.public_key.read_text()


def test_paper_typo_is_named_by_line(pair: Pair) -> None:
    text = paper.export_text(pair.vault.identity())
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("03:"))
    body = lines[i]
    pos = body.index(" ", 5) + 1
    swapped = "B" if body[pos] != "B" else "C"
    lines[i] = body[:pos] + swapped + body[pos + 1:]
    with pytest.raises(BadKeyFile, match="line 03"):
        paper.import_text("\n".join(lines))
    missing = [ln for ln in text.splitlines() if not ln.startswith("05:")]
    with pytest.raises(BadKeyFile, match="missing line"):
        paper.import_text("\n".join(missing))


def test_trust_roles_add_and_revoke(pair: Pair, cli) -> None:
    pub = pair.exporter.public_key
    fp = pair.exporter.public().fingerprint
    r = cli("keys", "trust", pub, "--home", pair.vault_path, "--role", "dpo", "--json")
    assert r.code == 0, r.err
    assert r.json()["roles"] == ["dpo", "exporter"]
    store = pair.vault.trust()
    assert store.require(pair.exporter.public().sign_pk, "dpo").fingerprint == fp
    with pytest.raises(WrongRole):
        store.require(pair.exporter.public().sign_pk, "vault")
    with pytest.raises(UntrustedSigner):
        store.require(keys.generate("x", "exporter").sign_pk, "exporter")

    r = cli("keys", "revoke", fp.lower().replace("-", " "), "--home", pair.vault_path)
    assert r.code == 0, r.err
    with pytest.raises(RevokedSigner):
        pair.vault.trust().require(pair.exporter.public().sign_pk, "exporter")
    listed = cli("keys", "list", "--home", pair.vault_path, "--json").json()
    assert listed["keys"][0]["revoked_at"]
    r = cli("keys", "trust", pub, "--home", pair.vault_path, "--role", "exporter")
    assert r.code == 4, "a revoked key cannot be trusted again"


def test_trusting_a_missing_key_file_is_a_file_problem(pair: Pair, cli, tmp_path: Path) -> None:
    r = cli("keys", "trust", tmp_path / "nope.pub", "--home", pair.vault_path, "--role",
            "exporter")
    assert r.code == 5 and "nope.pub" in r.err and "not found" in r.err


@pytest.mark.parametrize("columns", [200, 80, 60, 30])
def test_keys_list_never_cuts_a_fingerprint(tmp_path: Path, cli, columns: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprints are compared character by character: whole, on one line, any width."""
    vlt = home.create("vault", tmp_path / "v", "vault-a")
    names = ["shop-exporter-with-a-rather-long-descriptive-name", "x"]
    fps = []
    for name in names:
        other = home.create("exporter", tmp_path / name, name)
        r = cli("keys", "trust", other.public_key, "--home", vlt.path, "--role", "exporter")
        assert r.code == 0, r.err
        fps.append(other.public().fingerprint)
    monkeypatch.setenv("COLUMNS", str(columns))
    r = cli("keys", "list", "--home", vlt.path)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    for fp in fps:
        assert any(fp in line for line in lines), (fp, r.out)
    assert "…" not in r.out
    if columns >= 80:
        assert max(len(line) for line in lines) <= columns, r.out
