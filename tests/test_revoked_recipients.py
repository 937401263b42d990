"""Nothing is sealed to a vault key revoked in the home's trust store.

``keys revoke`` says a key is lost or compromised; ``export run`` went on
sealing every new bundle to it (check-config said OK, with a note to trust
it again), and ``bundle seal --to`` took it as well.
"""

from __future__ import annotations

from pathlib import Path

from export_kit import bundle_files, make_site


def _revoke_second_vault(cli, site) -> str:
    fingerprint = site.vaults[1].public().fingerprint
    assert cli("keys", "revoke", fingerprint, "--home", site.exporter.path).code == 0
    return fingerprint


def test_check_config_and_export_run_refuse_a_revoked_recipient(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, vaults=2)
    fingerprint = _revoke_second_vault(cli, site)

    res = cli("export", "check-config", "--home", site.exporter.path, "--json")
    assert res.code == 2, res.out
    [error] = res.json()["errors"]
    assert error["message"].startswith("key 'recipients[1].public_key': ")
    assert f"{fingerprint} (vault-1) was revoked" in error["message"]

    res = cli("export", "run", *site.args())
    assert res.code == 2
    assert "was revoked" in res.err
    assert bundle_files(site.outbox) == [] and not site.stick_outbox.exists()


def test_removing_the_block_lets_the_run_go_on(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, vaults=2)
    _revoke_second_vault(cli, site)
    text = site.exporter.config.read_text()
    block = f'\n[[recipients]]\npublic_key = "{site.vaults[1].public_key}"\n'
    assert block in text
    site.exporter.config.write_text(text.replace(block, "\n"))
    assert cli("export", "run", *site.args()).code == 0
    assert len(bundle_files(site.stick_outbox)) == 1


def test_bundle_seal_refuses_a_revoked_to_key(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, vaults=2)
    _revoke_second_vault(cli, site)
    out = tmp_path / "x.cvb"
    res = cli("bundle", "seal", site.source, "--home", site.exporter.path,
              "--to", site.vaults[0].public_key, "--to", site.vaults[1].public_key,
              "--source", "web", "--seq", "1", "-o", out)
    assert res.code == 4
    assert res.err.startswith(f"chatvault: {site.vaults[1].public_key}: ")
    assert not out.exists()
    # the key that was not revoked is still sealed to
    res = cli("bundle", "seal", site.source, "--home", site.exporter.path,
              "--to", site.vaults[0].public_key, "--source", "web", "--seq", "1", "-o", out)
    assert res.code == 0, res.err
