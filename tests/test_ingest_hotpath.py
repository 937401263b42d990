"""Ingest's fast paths give what the plain ones give, and its memory stays bounded."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from conftest import Pair
from vault import identifiers, ingest, ingestbundle, upsert
from vault import recordidentifiers as rids
from vault_kit import Chain, outbox, stick

# digits (ASCII and others), the hint's separators, NUL, '@' and some letters
_PIECES = st.text(alphabet="0123456789٣४ ().-/\n\t\x00@aZé", max_size=40)


@given(st.lists(_PIECES, max_size=8))
def test_suspects_are_the_texts_each_test_finds(texts: list[str]) -> None:
    one_by_one = [i for i, t in enumerate(texts)
                  if "@" in t or rids._PHONE_HINT.search(t)]
    assert rids.suspects(texts) == one_by_one


def test_suspects_cannot_join_digits_across_messages() -> None:
    assert rids.suspects(["call 077", "00 900123", "no digits"]) == [1]
    assert rids.suspects(["ab 123", "456", "x@y.org", "tel 07700 900123"]) == [2, 3]


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_fold_text_on_ascii_is_the_full_folding(text: str) -> None:
    nfkc = unicodedata.normalize("NFKC", text).casefold()
    reference = unicodedata.normalize("NFC", unicodedata.normalize("NFD", nfkc))
    assert identifiers.fold_text(text) == reference


def test_normalisation_caches_stay_bounded() -> None:
    rids._normal_phone.cache_clear()
    rids._name_key.cache_clear()
    for n in range(rids.CACHE_ENTRIES + 500):
        person = {"id": "c", "phone": f"+4477009{n:05d}", "name": f"Customer {n}"}
        rids.participant_identifiers(person, "GB")
    assert rids._normal_phone.cache_info().currsize == rids.CACHE_ENTRIES
    assert rids._name_key.cache_info().currsize == rids.CACHE_ENTRIES


def test_ingest_connection_uses_the_small_page_cache(pair: Pair, tmp_path: Path,
                                                     monkeypatch: Any) -> None:
    seen: list[int] = []

    class Probe(upsert.Loader):
        def flush(self) -> None:
            seen.append(self.conn.execute("PRAGMA cache_size").fetchone()[0])
            super().flush()

    monkeypatch.setattr(ingestbundle, "Loader", Probe)
    media_root = stick(tmp_path / "stick")
    sample = Path(__file__).resolve().parents[1] / "vault" / "samples" / "conversations.jsonl"
    convs = [json.loads(line) for line in sample.read_text("utf-8").splitlines() if line]
    Chain(pair, outbox(media_root)).seal(convs)

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert out.status == "ingested"
    assert seen and set(seen) == {-ingest.INGEST_CACHE_KIB}
