"""``export check-config``: every problem reported, each naming its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_kit import make_site
from vault import exportconfig, home


def _write(site, body: str) -> Path:
    """A config whose line numbers the test can count: header line 1, body from line 2."""
    site.exporter.config.write_text("# test config\n" + body)
    return site.exporter.config


def _check(cli, site) -> tuple[int, dict]:
    res = cli("export", "check-config", "--home", site.exporter.path, "--json")
    return res.code, res.json()


def _recipient(site) -> str:
    return f'[[recipients]]\npublic_key = "{site.vaults[0].public_key}"\n'


def _source(site, **fields: str) -> str:
    values = {"name": "web", "format": "jsonl", "path": str(site.source), **fields}
    return "[[sources]]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items())


def test_the_kit_config_is_valid(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, vaults=2)
    res = cli("export", "check-config", "--home", site.exporter.path)
    assert res.code == 0, res.err
    assert "OK (2 recipient(s), 1 source(s))" in res.err
    cfg = exportconfig.load(site.exporter.path)
    assert cfg.sources[0].phone_region == "GB"  # written "UK"
    assert cfg.writer_threads == -1  # threads = 0: one zstd worker per core


@pytest.mark.parametrize("body_fn,key,line,text", [
    (lambda s: _source(s), "recipients", None, "at least one [[recipients]]"),
    (lambda s: _recipient(s), "sources", None, "at least one [[sources]]"),
    (lambda s: '[[recipients]]\npublic_key = "nowhere.pub"\n' + _source(s),
     "recipients[0].public_key", 3, "nowhere.pub"),
    (lambda s: _recipient(s) + _source(s, name="../etc"), "sources[0].name", 5,
     "not usable in file names"),
    (lambda s: _recipient(s) + _source(s) + _source(s), "sources[1].name", 9,
     "used by another source"),
    (lambda s: _recipient(s) + _source(s, format="fax"), "sources[0].format", 6,
     "unknown format 'fax'"),
    (lambda s: _recipient(s) + _source(s, path="/no/such/export"), "sources[0].path", 7,
     "does not exist"),
    (lambda s: _recipient(s) + _source(s) + _source(s, name="b", timezone="Europe/Lundon"),
     "sources[1].timezone", 12, "unknown time zone"),
    (lambda s: _recipient(s) + _source(s, phone_region="XX"), "sources[0].phone_region", 8,
     "unknown phone region"),
    (lambda s: _recipient(s) + _source(s, timezon="UTC"), "sources[0].timezon", 8,
     "unknown key"),
    (lambda s: _recipient(s) + _source(s) + "[export]\nmax_bundle_bytes = 5000000000\n",
     "export.max_bundle_bytes", 9, "between 65536 and 4294967295"),
    (lambda s: _recipient(s) + _source(s) + "[export]\nzstd_level = 23\n",
     "export.zstd_level", 9, "between 1 and 22"),
    (lambda s: _recipient(s) + _source(s) + "[export]\nthreads = -1\n",
     "export.threads", 9, "between 0 and 256"),
    (lambda s: _recipient(s) + _source(s) + "[alerts]\nunacknowledged_warning_days = 9\n",
     "alerts.unacknowledged_warning_days", 9, "later than unacknowledged_critical_days"),
])
def test_each_problem_names_key_and_line(tmp_path: Path, cli, body_fn, key: str,
                                         line: int | None, text: str) -> None:
    site = make_site(tmp_path)
    path = _write(site, body_fn(site))

    code, out = _check(cli, site)

    assert code == 2 and out["ok"] is False
    [error] = out["errors"]
    assert f"key {key!r}" in error["message"] and text in error["message"], error
    if line is not None:
        assert error["path"] == f"{path}:{line}"


def test_an_exporter_key_is_not_a_recipient(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    _write(site, f'[[recipients]]\npublic_key = "{site.exporter.public_key}"\n' + _source(site))
    code, out = _check(cli, site)
    assert code == 2 and "is a exporter key, not a vault key" in out["errors"][0]["message"]


def test_every_problem_at_once_and_run_refuses(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    _write(site, _recipient(site) + _source(site, timezone="Mars/Olympus", format="fax")
           + "[export]\nzstd_level = 99\n")

    code, out = _check(cli, site)
    assert code == 2 and len(out["errors"]) == 3

    res = cli("export", "run", *site.args())
    assert res.code == 2
    assert "(and 2 more problem(s): run 'chatvault export check-config')" in res.err
    assert "config.toml:" in res.err


def test_unknown_top_level_key_and_bad_toml(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    _write(site, _recipient(site) + _source(site) + "[exprot]\nzstd_level = 3\n")
    code, out = _check(cli, site)
    assert code == 2 and "unknown key 'exprot'" in out["errors"][0]["message"]
    assert "did you mean 'export'?" in out["errors"][0]["message"]
    # an array of tables misspelt: its header line, and the key meant
    _write(site, _recipient(site) + "\n[[source]]\nname = \"web\"\n")
    code, out = _check(cli, site)
    [error] = out["errors"]
    assert "unknown key 'source'; did you mean 'sources'?" in error["message"]
    line = (site.exporter.config.read_text().splitlines().index("[[source]]") + 1)
    assert error["path"].endswith(f"config.toml:{line}"), error
    _write(site, "[[sources]\n")
    code, out = _check(cli, site)
    assert code == 2 and "not valid TOML" in out["errors"][0]["message"]


def test_notes_untrusted_recipient_and_absent_media(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, trust_vaults=False)
    other = home.create("vault", tmp_path / "v2", "v2")
    cfg = site.exporter.config
    cfg.write_text(cfg.read_text().replace(str(site.vaults[0].public_key),
                                           str(other.public_key)))

    res = cli("export", "check-config", "--home", site.exporter.path)

    assert res.code == 0
    assert "not trusted with role vault" in res.err and "--role vault" in res.err
    assert "/media/chatvault is not there now" in res.err


def test_relative_paths_are_relative_to_the_config(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    (site.exporter.path / "exports").mkdir()
    (site.exporter.path / "exports" / "web.jsonl").write_bytes(site.source.read_bytes())
    (site.exporter.path / "vault.pub").write_text(site.vaults[0].public_key.read_text())
    _write(site, '[[recipients]]\npublic_key = "vault.pub"\n'
           '[[sources]]\nname = "web"\nformat = "jsonl"\npath = "exports/web.jsonl"\n')
    assert _check(cli, site)[0] == 0
    assert exportconfig.load(site.exporter.path).sources[0].path == (
        site.exporter.path / "exports" / "web.jsonl")


def _readme_section(title: str) -> str:
    from conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"\n{title}\n" in text, f"README has no {title!r}"
    body = text.split(f"\n{title}\n", 1)[1]
    level = title.split(" ")[0]
    return body.split(f"\n{level} ", 1)[0]


def test_the_readme_exporter_example_is_a_valid_config(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    section = _readme_section("## Exporter")
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    assert "[[recipients]]" in example and "[[sources]]" in example
    _write(site, example.replace("/etc/chatvault/vault-a.pub", str(site.vaults[0].public_key))
           .replace("/srv/exports/web", str(site.source))
           .replace("/media/chatvault", str(site.stick)))

    code, out = _check(cli, site)

    assert code == 0, out["errors"]
    assert out["sources"] == ["web"] and len(out["recipients"]) == 1
    for command in ("export check-config", "export run --media", "export status",
                    "chatvault-export.timer", "export reseal", "export resolve"):
        assert command in section, command
    for command in ("check-config", "run", "status", "resolve", "reseal"):
        assert cli("export", command, "--help").code == 0
    # the lost-state refusal points at this section by name, and it says what to do
    from vault import exportrecovery

    assert "README: 'If the exporter state is lost'" in exportrecovery._WAY_OUT
    lost = _readme_section("### If the exporter state is lost")
    assert "restore `H/state/`" in lost and "new `name`" in lost


def test_source_names_differing_only_in_case_are_refused(tmp_path: Path, cli) -> None:
    # on an exFAT/FAT stick Web-00000001.cvb and web-00000001.cvb are one file
    site = make_site(tmp_path)
    path = _write(site, _recipient(site) + _source(site, name="web")
                  + _source(site, name="b") + _source(site, name="Web"))

    code, out = _check(cli, site)

    assert code == 2 and out["ok"] is False
    [error] = out["errors"]
    message = error["message"]
    assert "key 'sources[2].name'" in message and "'Web'" in message, message
    assert "differs only in letter case" in message
    assert f"'sources[0].name' ('web', {path}:5)" in message, message
    assert error["path"] == f"{path}:13"
    res = cli("export", "run", *site.args())
    assert res.code == 2 and "differs only in letter case" in res.err
