"""One bundle whose local copy is gone or damaged does not keep the others off the stick.

The write loop stopped at the first such bundle: every later bundle stayed
in the outbox (and was counted as waiting there) until someone dealt with
the one, though the vault ingests them across the gap.
"""

from __future__ import annotations

from pathlib import Path

from export_kit import bundle_files, conv, make_site, write_jsonl


def _three_bundles(tmp_path: Path, cli):
    """Three bundles sealed with no stick at hand: all three wait in the outbox."""
    convs = [conv("c0", ["hello"])]
    site = make_site(tmp_path, convs=convs)
    absent = tmp_path / "absent"
    for n in range(1, 4):
        assert cli("export", "run", "--home", site.exporter.path, "--media", absent).code == 5
        convs.append(conv(f"c{n}", ["more"]))
        write_jsonl(site.source, convs)
    assert bundle_files(site.outbox) == [f"web-0000000{n}.cvb" for n in (1, 2, 3)]
    return site


def test_the_other_bundles_are_written(tmp_path: Path, cli) -> None:
    site = _three_bundles(tmp_path, cli)
    (site.outbox / "web-00000001.cvb").unlink()
    damaged = site.outbox / "web-00000002.cvb"
    data = bytearray(damaged.read_bytes())
    data[300] ^= 1
    damaged.write_bytes(bytes(data))

    res = cli("export", "rewrite", *site.args(), "--json")

    assert res.code == 1
    media = res.json()["media"]
    assert [w["file"] for w in media["written"]] == ["web-00000003.cvb"]
    assert bundle_files(site.stick_outbox) == ["web-00000003.cvb"]
    assert [e["path"] for e in media["unwritable"]] == [
        str(site.outbox / "web-00000001.cvb"), str(damaged)]
    assert media["error"]["error"] == "local_copy_damaged"
    assert media["waiting"] == 0 and media["bytes_waiting"] == 0
    text = cli("export", "rewrite", *site.args())
    assert "web-00000001.cvb: cannot read the local copy" in text.err
    assert "does not match the SHA-256 recorded" in text.err
    assert "wait in the local outbox" not in text.err
