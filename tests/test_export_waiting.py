"""When bundles cannot go onto the media, the run says how many bytes they need.

Full, read-only or vanished media: the operator must know what size of stick
takes what waits; only the full-media message said it.
"""

from __future__ import annotations

from pathlib import Path

from export_kit import conv, make_site


def test_missing_media_names_the_bytes_waiting(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, convs=[conv(f"c{i}", ["hello"] * 20) for i in range(5)])
    gone = tmp_path / "gone"

    res = cli("export", "run", "--home", site.exporter.path, "--media", gone, "--json")

    assert res.code == 5
    media = res.json()["media"]
    size = sum(p.stat().st_size for p in site.outbox.iterdir())
    assert media["waiting"] == 1 and media["bytes_waiting"] == size > 0
    res = cli("export", "rewrite", "--home", site.exporter.path, "--media", gone)
    assert res.code == 5
    assert f"1 bundle(s) ({size:,} bytes) wait in the local outbox" in res.err


def test_nothing_waiting_once_written(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 0, res.err
    media = res.json()["media"]
    assert media["waiting"] == 0 and media["bytes_waiting"] == 0
