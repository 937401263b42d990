"""``-o`` naming the input file itself is refused: the input was replaced without a word.

``bundle seal x.jsonl -o x.jsonl`` left only a bundle the exporter cannot
open; ``bundle open b.cvb -o b.cvb`` replaced the sealed bundle by plaintext.
"""

from __future__ import annotations

from pathlib import Path

from conftest import Pair


def _unchanged(path: Path, before: bytes) -> bool:
    return path.read_bytes() == before


def test_bundle_seal_and_open_refuse_to_write_over_their_input(pair: Pair, cli,
                                                               sample_jsonl: Path) -> None:
    src = pair.root / "in.jsonl"
    src.write_bytes(sample_jsonl.read_bytes())
    before = src.read_bytes()
    res = cli("bundle", "seal", src, "--home", pair.exporter_path, "--to",
              pair.vault.public_key, "--source", "web", "--seq", "1", "-o", src)
    assert res.code == 2 and "is the input file itself" in res.err
    assert _unchanged(src, before)

    sealed = pair.root / "b.cvb"
    assert cli("bundle", "seal", src, "--home", pair.exporter_path, "--to",
               pair.vault.public_key, "--source", "web", "--seq", "1", "-o", sealed).code == 0
    before = sealed.read_bytes()
    res = cli("bundle", "open", sealed, "--home", pair.vault_path, "-o", sealed)
    assert res.code == 2 and "is the input file itself" in res.err
    assert _unchanged(sealed, before)


def test_sources_convert_refuses_to_write_over_its_input(tmp_path: Path, cli,
                                                         sample_jsonl: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(sample_jsonl.read_bytes())
    before = src.read_bytes()
    other_name = tmp_path / "sub" / ".." / "in.jsonl"
    (tmp_path / "sub").mkdir()
    res = cli("sources", "convert", src, "-f", "jsonl", "-o", other_name)
    assert res.code == 2 and "is the input file itself" in res.err
    assert _unchanged(src, before)
    assert cli("sources", "convert", src, "-f", "jsonl", "-o", tmp_path / "out.jsonl").code == 0


def test_dash_is_refused_rather_than_made_a_file_named_dash(pair: Pair, cli, tmp_path: Path,
                                                            sample_jsonl: Path,
                                                            monkeypatch) -> None:
    """'-o -' means standard output to most tools; here it made a file called '-'."""
    monkeypatch.chdir(tmp_path)
    sealed = tmp_path / "b.cvb"
    assert cli("bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to",
               pair.vault.public_key, "--source", "web", "--seq", "1", "-o", sealed).code == 0
    for args in (["bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to",
                  pair.vault.public_key, "--source", "web", "--seq", "1"],
                 ["bundle", "open", sealed, "--home", pair.vault_path],
                 ["sources", "convert", sample_jsonl, "-f", "jsonl"]):
        res = cli(*args, "-o", "-")
        assert res.code == 2 and "standard output" in res.err, (args, res.err)
    assert not (tmp_path / "-").exists()
