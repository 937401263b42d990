"""``chatvault init --name``: a name the key file cannot give back is refused before anything.

The public key's ``Name:`` line is read back stripped and line by line; a
name with a newline or spaces at either end made a home whose own public key
failed its self-signature check (init exited 3 and left the home behind),
and the newline went into config.toml too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BAD = ["x\nRole: vault", " shop ", "tab\there", "a\u202eb", "", "n" * 129, "nul\x00"]


@pytest.mark.parametrize("name", BAD)
def test_an_unusable_name_is_refused_and_nothing_is_made(tmp_path: Path, cli, name: str) -> None:
    home = tmp_path / "h"
    res = cli("init", "exporter", home, "--name", name)
    assert res.code == 2, res.err
    assert "not usable as a key's name" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not home.exists()


def test_names_people_use_are_kept_exactly(tmp_path: Path, cli) -> None:
    name = "Ünïcode shop 👩\u200d💻 (site B)"
    home = tmp_path / "h"
    assert cli("init", "vault", home, "--name", name).code == 0
    res = cli("keys", "show", "--home", home, "--json")
    assert res.code == 0, res.err
    assert res.json()["name"] == name
