"""``sources convert`` writes each conversation once, in its last version, as export run seals it.

A conversation met twice in one export (a growing chat in daily files, a
WhatsApp chat exported as .txt and as .zip) was written twice, and
``bundle seal`` refuses a file that repeats an id: the README's by-hand
path (convert, then seal) failed on such exports.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from conftest import Pair


def _chat(lines: int) -> str:
    return "".join(f"14/03/2024, 09:0{i} - Ana: message {i}\n" for i in range(lines))


def test_a_chat_exported_twice_is_written_once_and_seals(pair: Pair, cli) -> None:
    folder = pair.root / "wa"
    folder.mkdir()
    (folder / "WhatsApp Chat with Ana.txt").write_text(_chat(2), encoding="utf-8")
    with zipfile.ZipFile(folder / "WhatsApp Chat with Ana.zip", "w") as zf:
        zf.writestr("_chat.txt", _chat(3))
    out = pair.root / "out.jsonl"

    res = cli("sources", "convert", folder, "-f", "whatsapp", "--timezone", "UTC",
              "-o", out, "--json")

    assert res.code == 0, res.err
    assert res.json()["replaced"] == 1 and res.json()["conversations"] == 1
    [line] = out.read_text("utf-8").splitlines()
    assert len(json.loads(line)["messages"]) == 3  # the later file, as export run takes it
    sealed = cli("bundle", "seal", out, "--home", pair.exporter_path, "--to",
                 pair.vault.public_key, "--source", "default", "--seq", "1",
                 "-o", pair.root / "b.cvb")
    assert sealed.code == 0, sealed.err


def test_daily_jsonl_files_keep_the_last_version(tmp_path: Path, cli) -> None:
    def conv(n: int) -> str:
        return json.dumps({"conversation_id": "c-1", "started_at": "2024-03-14T09:00:00Z",
                           "participants": [{"id": "p", "role": "customer"}],
                           "messages": [{"id": f"m{i}", "at": "2024-03-14T09:00:00Z",
                                         "from": "p", "text": "hi"} for i in range(n)]})
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "2024-03-14.jsonl").write_text(conv(1) + "\n")
    (folder / "2024-03-15.jsonl").write_text(conv(2) + "\n")
    out = tmp_path / "out.jsonl"
    res = cli("sources", "convert", folder, "-f", "jsonl", "-o", out)
    assert res.code == 0, res.err
    assert "1 earlier version(s) of a conversation left for a later one" in res.err
    [line] = out.read_text("utf-8").splitlines()
    assert len(json.loads(line)["messages"]) == 2
