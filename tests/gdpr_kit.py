"""Helpers shared by the GDPR tests (no tests here).

A vault with the built-in sample ingested (Mara Quint is the customer in
web-1001 and web-1005 and mentioned in web-1003), a CLI runner bound to its
home, and a raw byte scan of the store's files.
"""

from __future__ import annotations

import io
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import REPO, Pair, Result, make_pair, run_cli
from vault import bundle, ingest, media, store

SAMPLE = REPO / "vault" / "samples" / "conversations.jsonl"
MARA_EMAIL = "mara.quint@example.org"
MARA_PHONE = "+447700900123"
#: Mara's identifiers as the sample writes them, and the FTS tokens of her surname
MARA_TRACES = [b"mara.quint@example.org", b"MARA.QUINT@example.org", b"07700 900123",
               b"+44 7700 900123", b"+447700900123", b"Quint", b"quint"]


@dataclass
class Vault:
    pair: Pair
    stick: Path
    bundle: Path

    @property
    def home(self) -> Path:
        return self.pair.vault_path

    def cli(self, *args: str | Path, input_text: str | None = None) -> Result:
        return run_cli(*args, "--home", self.home, input_text=input_text)

    def conn(self) -> Any:
        return store.open_store(self.home / store.FILE_NAME)

    def files(self) -> list[Path]:
        return [self.home / store.FILE_NAME, self.home / (store.FILE_NAME + "-wal")]


def sample_vault(root: Path, sample: Path = SAMPLE, source: str = "sample") -> Vault:
    """Exporter and vault homes; the sample sealed onto a stick and ingested."""
    pair = make_pair(root)
    stick = root / "stick"
    outbox = stick / media.ROOT / media.OUTBOX
    outbox.mkdir(parents=True)
    sealed = outbox / bundle.file_name(source, 1)
    bundle.seal_jsonl(sample, sealed, pair.exporter.identity(), [pair.vault.public()],
                      source=source, sequence=1)
    kept = root / "kept.cvb"
    kept.write_bytes(sealed.read_bytes())
    [out] = ingest.ingest_media(pair.vault_path, stick)
    assert out.status == "ingested"
    return Vault(pair, stick, kept)


def traces(paths: list[Path], needles: list[bytes]) -> dict[str, list[str]]:
    """Which needles occur (exact bytes) in which files."""
    found: dict[str, list[str]] = {}
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            hits = [n.decode() for n in needles if n in data]
            if hits:
                found[path.name] = hits
    return found


def blob(content: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(content).hexdigest(), content


def reader(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
