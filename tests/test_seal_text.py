"""``bundle seal`` reads JSONL text as the JSONL reader does.

``sources convert -f jsonl`` took a file starting with a UTF-8 byte order
mark (Windows editors write one); ``bundle seal`` refused it as bad JSON,
and said "surrogates not allowed" of UTF-16 and Latin-1 files instead of
what they are.
"""

from __future__ import annotations

from pathlib import Path

from conftest import Pair

LINE = ('{"conversation_id": "c-1", "started_at": "2024-03-14T09:05:12Z", '
        '"participants": [], "messages": [{"id": "m1", "at": "2024-03-14T09:05:12Z", '
        '"from": null, "text": "café"}]}\n')


def _seal(cli, pair: Pair, data: bytes):
    src = pair.root / "in.jsonl"
    src.write_bytes(data)
    out = pair.root / "out.cvb"
    res = cli("bundle", "seal", src, "--home", pair.exporter_path, "--to",
              pair.vault.public_key, "--source", "web", "--seq", "1", "-o", out)
    return res, out


def test_a_utf8_byte_order_mark_is_taken(pair: Pair, cli) -> None:
    res, out = _seal(cli, pair, b"\xef\xbb\xbf" + LINE.encode())
    assert res.code == 0, res.err
    opened = pair.root / "opened.jsonl"
    assert cli("bundle", "open", out, "--home", pair.vault_path, "-o", opened).code == 0
    assert "café" in opened.read_text("utf-8")


def test_text_that_is_not_utf8_is_named(pair: Pair, cli) -> None:
    res, out = _seal(cli, pair, LINE.encode("utf-16"))
    assert res.code == 3 and not out.exists()
    assert "looks like UTF-16; re-save it as UTF-8" in res.err
    res, out = _seal(cli, pair, LINE.encode("latin-1"))
    assert res.code == 3 and not out.exists()
    assert "line 1: not UTF-8 text: byte " in res.err and "(0xE9)" in res.err
    assert "surrogates" not in res.err
