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


def _paper_lines(text: str, label: str) -> tuple[list[str], int]:
    lines = text.splitlines()
    return lines, next(i for i, ln in enumerate(lines) if ln.startswith(f"{label}:"))


def _typo(value: str) -> str:
    """One character of ``value`` (not its first) typed wrong, as a person might."""
    pos = next(i for i, ch in enumerate(value) if i > 0 and ch.isalnum())
    ch = value[pos]
    wrong = ("3" if ch != "3" else "4") if ch.isdigit() else ("Q" if ch.upper() != "Q" else "R")
    return value[:pos] + wrong + value[pos + 1:]


def test_paper_round_trip_checks_every_line_and_keeps_metadata(
        pair: Pair, tmp_path: Path, cli, caplog: pytest.LogCaptureFixture) -> None:
    for src in (pair.vault, pair.exporter):
        text = cli("keys", "export-paper", "--home", src.path).out
        for label in ("Name", "Role", "Created", "Fingerprint"):
            lines, i = _paper_lines(text, label)
            value, _, check = lines[i].partition(":")[2].rpartition(" / ")
            assert len(check) == 4, f"the {label}: line carries a checksum"
        sheet = tmp_path / f"{src.kind()}.txt"
        sheet.write_text(text)
        with caplog.at_level("WARNING", logger="vault.keys"):
            r = cli("keys", "import-paper", sheet, "--home", tmp_path / f"r-{src.kind()}",
                    "--json")
        assert r.code == 0, r.err
        assert not caplog.records, "a checked backup gives no warning"
        restored = home.Home(tmp_path / f"r-{src.kind()}")
        assert restored.public().describe() == src.public().describe()
        assert restored.identity().fingerprint == src.identity().fingerprint
        assert restored.public_key.read_text() == src.public_key.read_text()


@pytest.mark.parametrize("label", ["Name", "Role", "Created", "Fingerprint"])
def test_paper_metadata_typo_is_refused_naming_the_line(pair: Pair, tmp_path: Path, cli,
                                                         label: str) -> None:
    text = paper.export_text(pair.exporter.identity())
    lines, i = _paper_lines(text, label)
    head, _, rest = lines[i].partition(": ")
    value, slash, check = rest.rpartition(" / ") if " / " in rest else (rest, "", "")
    lines[i] = f"{head}: {_typo(value)}{slash}{check}"
    with pytest.raises(BadKeyFile, match=f"the '{label}:' line"):
        paper.import_text("\n".join(lines))
    # through the command: the exit code and kind of a bad numbered line, no home made
    sheet = tmp_path / "typo.txt"
    sheet.write_text("\n".join(lines))
    r = cli("keys", "import-paper", sheet, "--home", tmp_path / "restored", "--json")
    data_lines, j = _paper_lines(text, "04")
    data_lines[j] = data_lines[j][:5] + _typo(data_lines[j][5:9]) + data_lines[j][9:]
    (tmp_path / "data-typo.txt").write_text("\n".join(data_lines))
    bad_data = cli("keys", "import-paper", tmp_path / "data-typo.txt", "--home",
                   tmp_path / "other", "--json")
    assert bad_data.code != 0 and "line 04" in bad_data.err
    assert r.code == bad_data.code
    assert r.json()["error"] == bad_data.json()["error"] == "bad_key_file"
    assert f"'{label}:' line" in r.err
    assert not (tmp_path / "restored").exists()


def test_paper_created_transposition_is_refused(pair: Pair) -> None:
    text = paper.export_text(pair.vault.identity())
    lines, i = _paper_lines(text, "Created")
    ln = lines[i]
    pos = next(p for p in range(len("Created: "), len(ln) - 1)
               if ln[p].isdigit() and ln[p + 1].isdigit() and ln[p] != ln[p + 1])
    lines[i] = ln[:pos] + ln[pos + 1] + ln[pos] + ln[pos + 2:]
    with pytest.raises(BadKeyFile, match="the 'Created:' line"):
        paper.import_text("\n".join(lines))


def test_paper_exporter_key_cannot_be_restored_as_a_vault(pair: Pair, tmp_path: Path,
                                                          cli) -> None:
    text = cli("keys", "export-paper", "--home", pair.exporter_path).out
    assert "Role: exporter" in text
    sheet = tmp_path / "paper.txt"
    sheet.write_text(text.replace("Role: exporter", "Role: vault"))
    r = cli("keys", "import-paper", sheet, "--home", tmp_path / "restored")
    assert r.code == BadKeyFile.exit_code, r.err
    assert "'Role:' line" in r.err and "checksum" in r.err
    assert not (tmp_path / "restored").exists()


def _legacy(text: str) -> str:
    """The sheet as printed before the metadata lines carried checksums."""
    out = []
    for ln in text.splitlines():
        if ln.split(":")[0] in ("Name", "Role", "Created", "Fingerprint") and " / " in ln:
            ln = ln.rpartition(" / ")[0]
        out.append(ln)
    return "\n".join(out) + "\n"


def test_paper_legacy_backup_is_restored_with_a_warning(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    ident = pair.exporter.identity()
    with caplog.at_level("WARNING", logger="vault.keys"):
        restored = paper.import_text(_legacy(paper.export_text(ident)), "old.txt")
    assert restored.fingerprint == ident.fingerprint
    assert restored.public().describe() == ident.public().describe()
    [warning] = [r for r in caplog.records if r.name == "vault.keys"]
    message = warning.getMessage()
    assert warning.levelname == "WARNING"
    assert "Name, Role and Created" in message and "could not be caught" in message
    assert "'exporter'" in message and ident.created in message


def test_paper_legacy_backup_with_a_slash_in_its_name(caplog: pytest.LogCaptureFixture) -> None:
    ident = keys.generate("shop/web", "exporter")
    with caplog.at_level("WARNING", logger="vault.keys"):
        restored = paper.import_text(_legacy(paper.export_text(ident)))
    assert restored.name == "shop/web" and restored.fingerprint == ident.fingerprint
    assert caplog.records
    # the new format with such a name is checked (and needs no warning)
    caplog.clear()
    with caplog.at_level("WARNING", logger="vault.keys"):
        assert paper.import_text(paper.export_text(ident)).name == "shop/web"
    assert not caplog.records


def test_paper_checksum_left_off_one_metadata_line_is_refused(pair: Pair) -> None:
    """Only a backup with none of them is an old one: one left off is a typing slip."""
    lines, i = _paper_lines(paper.export_text(pair.vault.identity()), "Role")
    lines[i] = lines[i].rpartition(" / ")[0]
    with pytest.raises(BadKeyFile, match="the 'Role:' line: the '/ checksum' part is missing"):
        paper.import_text("\n".join(lines))
    lines, i = _paper_lines(_legacy(paper.export_text(pair.vault.identity())), "Name")
    name = pair.vault.identity().name
    lines[i] = f"Name: {name} / {paper._field_checksum('Name', name)}"
    with pytest.raises(BadKeyFile, match="the 'Role:' line: the '/ checksum' part is missing"):
        paper.import_text("\n".join(lines))


def test_trust_roles_add_and_revoke(pair: Pair, cli) -> None:
    pub = pair.exporter.public_key
    fp = pair.exporter.public().fingerprint
    r = cli("keys", "trust", pub, "--home", pair.vault_path, "--role", "DPO", "--json")
    assert r.code == 0, r.err  # a role typed in capitals is that role
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


def test_a_missing_key_file_is_a_file_problem_for_every_command(pair: Pair, cli,
                                                                tmp_path: Path) -> None:
    """keys show and seal --to name the file and exit 5, as keys trust and a bundle do."""
    missing = tmp_path / "nope.pub"
    shown = cli("keys", "show", missing, "--json")
    assert shown.code == 5 and shown.json()["error"] == "media_missing"
    records = tmp_path / "in.jsonl"
    records.write_text("")
    r = cli("bundle", "seal", records, "--home", pair.exporter_path, "--to", missing,
            "--source", "web", "--seq", "1", "-o", tmp_path / "out.cvb")
    assert r.code == 5 and "nope.pub" in r.err
    assert not (tmp_path / "out.cvb").exists()


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
