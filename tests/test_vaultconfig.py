"""The vault's config.toml: every key type-checked when it is loaded.

A value of the wrong type must stop ``vault status`` and every vault
command with exit 2, the key and its line, the moment the config is read:
``redact_agent_names = "false"`` is a string (and a true one), and
``four_eyes = "no"`` must not wait for the first erasure to be noticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from vault import vaultconfig

#: (the line as written in the template, what a hostile new user wrote, the key)
BAD = [
    ("redact_agent_names = false", 'redact_agent_names = "false"', "dsar.redact_agent_names"),
    ("four_eyes = false", 'four_eyes = "no"', "erasure.four_eyes"),
    ("four_eyes = false", "four_eyes = 0", "erasure.four_eyes"),
    ("delete_ingested = false", 'delete_ingested = "yes"', "daemon.delete_ingested"),
    ("dsar_warning_days = 7", 'dsar_warning_days = "7"', "alerts.dsar_warning_days"),
    ("dsar_warning_days = 7", "dsar_warning_days = 7.5", "alerts.dsar_warning_days"),
    ("drill_interval_days = 90", "drill_interval_days = true", "alerts.drill_interval_days"),
    ("retention_days = 0 ", 'retention_days = "730" ', "defaults.retention_days"),
    ("clock_ahead_hours = 24", 'clock_ahead_hours = "24"', "alerts.clock_ahead_hours"),
    ("max_plaintext_bytes = 68719476736", "max_plaintext_bytes = 6.5e10",
     "limits.max_plaintext_bytes"),
    ('phone_region = "GB"', "phone_region = 44", "defaults.phone_region"),
    ("# purposes = [", "purposes = [1, 2]\n# x = [", "processing.purposes"),
    ("# controller =", "controller = true\n# c =", "processing.controller"),
]


def _write(pair: Pair, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the vault's config; the line ``new`` starts on."""
    cfg = pair.vault.config
    text = cfg.read_text()
    assert old in text, old
    text = text.replace(old, new, 1)
    cfg.write_text(text)
    return text[:text.index(new)].count("\n") + 1


@pytest.mark.parametrize("old,new,key", BAD, ids=[b[1].split("\n")[0] for b in BAD])
def test_a_value_of_the_wrong_type_stops_every_vault_command(pair: Pair, cli: Any, old: str,
                                                             new: str, key: str) -> None:
    line = _write(pair, old, new)
    for command in (("vault", "status"), ("erase", "list"), ("dsar", "list"),
                    ("subject", "find", "--email", "a@example.org")):
        r = cli(*command, "--home", pair.vault_path)
        # a status command that cannot judge is UNKNOWN (3), not CRITICAL (2)
        assert r.code == (3 if command[1] == "status" else 2), (command, r.out, r.err)
        assert repr(key) in r.err and f"config.toml:{line}" in r.err, (command, r.err)


def test_a_table_that_is_not_a_table_is_named(pair: Pair, cli: Any) -> None:
    cfg = pair.vault.config
    text = cfg.read_text()
    assert "[erasure]\nfour_eyes = false" in text
    cfg.write_text("erasure = 5\n" + text.replace("[erasure]\nfour_eyes = false", ""))
    r = cli("vault", "status", "--home", pair.vault_path)
    assert r.code == 3 and "'erasure': expected a table" in r.err
    assert "config.toml:1:" in r.err


def test_the_template_loads_with_its_defaults(pair: Pair) -> None:
    cfg = vaultconfig.load(pair.vault_path)
    assert (cfg.four_eyes, cfg.redact_agent_names) == (False, False)
    assert (cfg.dsar_warning_days, cfg.drill_interval_days) == (7, 90)
    assert cfg.processing == {}


def test_true_values_are_used(pair: Pair) -> None:
    _write(pair, "four_eyes = false", "four_eyes = true")
    _write(pair, "redact_agent_names = false", "redact_agent_names = true")
    _write(pair, "# purposes = [", 'purposes = ["support"]\n# x = [')
    cfg = vaultconfig.load(pair.vault_path)
    assert cfg.four_eyes is True and cfg.redact_agent_names is True
    assert cfg.processing == {"purposes": ["support"]}


def test_a_requester_home_is_refused_by_vault_commands(pair: Pair, cli: Any,
                                                       tmp_path: Path) -> None:
    """A DPO's home reads as a vault config with every default; its key says otherwise."""
    from vault import home
    from vault_kit import stick

    dpo = home.create("requester", tmp_path / "dpo", "dpo-anna").path
    before = sorted(p.name for p in dpo.iterdir())
    media_root = stick(tmp_path / "stick")
    for command, code in ((("vault", "ingest", media_root), 2), (("vault", "status"), 3),
                          (("vault", "daemon"), 2),
                          (("subject", "find", "--email", "a@example.org"), 2)):
        r = cli(*command, "--home", dpo)
        assert r.code == code, (command, r.err)
        assert f"{dpo} is a requester home" in r.err and "store" not in r.err
        assert len(r.err.strip().splitlines()) == 1
    assert sorted(p.name for p in dpo.iterdir()) == before, "nothing made in the DPO's home"
