"""The sealed bundle format: round trips, and every way of breaking one."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bundle_forge as forge
from conftest import Pair, make_pair
from vault import bundle, canonical, keys, records
from vault.bundle import layout
from vault.errors import (BadMagic, BadSignature, ChatvaultError, CorruptPayload,
                          InvalidRecord, NotARecipient, Oversize, RevokedSigner,
                          TrailingData, Truncated, UnsupportedVersion, UntrustedSigner)


def conv(cid: str, texts: list[str]) -> dict:
    return {"conversation_id": cid, "started_at": "2024-03-14T09:05:12Z",
            "participants": [{"id": "p1", "role": "customer", "name": "Mara"}],
            "messages": [{"id": f"m{i}", "at": "2024-03-14T09:05:12Z", "from": "p1",
                          "text": t} for i, t in enumerate(texts)]}


def write_jsonl(path: Path, convs: list[dict]) -> Path:
    path.write_bytes(b"".join(canonical.dumps(c) + b"\n" for c in convs))
    return path


def seal(pair: Pair, convs: list[dict], name: str = "b.cvb", **kw) -> bundle.Sealed:
    src = write_jsonl(pair.root / f"{name}.jsonl", convs)
    return bundle.seal_jsonl(src, pair.root / name, pair.exporter.identity(),
                             [pair.vault.public()], source="web", sequence=1, **kw)


def open_all(pair: Pair, path: Path) -> list[dict]:
    out = pair.root / "out.jsonl"
    bundle.open_to_jsonl(path, pair.vault.identity(), pair.vault.trust(), out)
    # split on b"\n" only: U+2028 and friends are legal inside JSON strings
    return [json.loads(line) for line in out.read_bytes().split(b"\n") if line]


def refused(pair: Pair, path: Path) -> ChatvaultError:
    out = pair.root / "refused.jsonl"
    with pytest.raises(ChatvaultError) as info:
        bundle.open_to_jsonl(path, pair.vault.identity(), pair.vault.trust(), out)
    assert not out.exists(), "a refused bundle must leave no output"
    return info.value


# -- round trips ---------------------------------------------------------------------

def test_round_trip_empty(pair: Pair) -> None:
    sealed = seal(pair, [])
    assert sealed.meta["counts"]["conversations"] == 0
    assert open_all(pair, sealed.path) == []


def test_round_trip_tiny_keeps_canonical_bytes(pair: Pair, sample_jsonl: Path) -> None:
    sealed = bundle.seal_jsonl(sample_jsonl, pair.root / "s.cvb", pair.exporter.identity(),
                               [pair.vault.public()], source="sample", sequence=1)
    out = pair.root / "o.jsonl"
    bundle.open_to_jsonl(sealed.path, pair.vault.identity(), pair.vault.trust(), out)
    expected = b"".join(records.canonical_line(line, "x")[0] + b"\n"
                        for line in sample_jsonl.read_bytes().splitlines() if line.strip())
    assert out.read_bytes() == expected
    assert sealed.meta["counts"] == {"conversations": 6, "messages": 18, "participants": 13,
                                     "attachments": 0, "blobs": 0}


def test_round_trip_multi_chunk(pair: Pair) -> None:
    rng = random.Random(7)
    texts = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz ÄÖü€😀") for _ in range(3000))
             for _ in range(40)]
    convs = [conv(f"c{i}", texts[i::4]) for i in range(4)]
    sealed = seal(pair, convs, chunk_size=layout.MIN_CHUNK)
    assert sealed.path.stat().st_size == sealed.size
    assert bundle.inspect(sealed.path)["chunks"] > 20
    assert open_all(pair, sealed.path) == convs


def test_huge_line_round_trips(pair: Pair) -> None:
    big = conv("huge", ["x" * (5 * 1024 * 1024), "tail"])
    assert open_all(pair, seal(pair, [big]).path) == [big]


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_text, min_size=1, max_size=6), name=_text)
def test_hypothesis_round_trip(tmp_path_factory: pytest.TempPathFactory,
                               texts: list[str], name: str) -> None:
    p = make_pair(tmp_path_factory.mktemp("h"))
    c = conv("c-1", texts)
    c["participants"][0]["name"] = name
    assert open_all(p, seal(p, [c]).path) == [c]


def test_invalid_line_seals_nothing(pair: Pair) -> None:
    src = pair.root / "bad.jsonl"
    good = canonical.dumps(conv("c1", ["hi"]))
    bad = conv("c2", ["x"])
    bad["messages"][0]["from"] = "nobody"
    src.write_bytes(good + b"\n" + canonical.dumps(bad) + b"\n")
    with pytest.raises(InvalidRecord, match=r"line 2.*'from'"):
        bundle.seal_jsonl(src, pair.root / "x.cvb", pair.exporter.identity(),
                          [pair.vault.public()], source="web", sequence=1)
    assert not (pair.root / "x.cvb").exists()
    assert [p.name for p in pair.root.iterdir() if p.name.startswith(".x.cvb")] == []


# -- damage ----------------------------------------------------------------------------

def test_every_single_byte_flip_is_refused(pair: Pair) -> None:
    data = seal(pair, [conv("c1", ["hello", "world"])]).path.read_bytes()
    target = pair.root / "flip.cvb"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        target.write_bytes(bytes(flipped))
        refused(pair, target)


def _multi_chunk(pair: Pair) -> bytes:
    rng = random.Random(3)
    texts = [os.urandom(1).hex() + "".join(rng.choice("qwertyuiop") for _ in range(2500))
             for _ in range(12)]
    return seal(pair, [conv("c1", texts)], chunk_size=layout.MIN_CHUNK).path.read_bytes()


def test_truncation_at_every_chunk_boundary_and_mid_chunk(pair: Pair) -> None:
    data = _multi_chunk(pair)
    offsets = forge.chunk_offsets(data)
    assert len(offsets) > 4
    cuts = set(offsets) | {(a + b) // 2 for a, b in zip(offsets, offsets[1:])}
    cuts |= {1, 10, layout.PREFIX_BYTES, len(data) - 1}
    target = pair.root / "cut.cvb"
    for cut in sorted(cuts):
        target.write_bytes(data[:cut])
        err = refused(pair, target)
        assert isinstance(err, (Truncated, BadMagic)), (cut, err)


def test_bytes_appended_after_final(pair: Pair) -> None:
    data = seal(pair, [conv("c1", ["hi"])]).path.read_bytes()
    err = refused(pair, forge.write(pair.root / "a.cvb", data + b"\x00"))
    assert isinstance(err, TrailingData)


def test_second_final_chunk_is_refused(pair: Pair) -> None:
    """A forger with the signing key tags an inner chunk FINAL: the AEAD refuses."""
    data = _multi_chunk(pair)
    parts = forge.split(data)
    # Re-encrypt is impossible without the payload key; instead end the stream
    # early by dropping the real FINAL chunk and repeating an earlier one.
    parts.chunks = parts.chunks[:-1] + [parts.chunks[-2]]
    err = refused(pair, forge.write(pair.root / "f.cvb",
                                    parts.assemble(pair.exporter.identity())))
    assert isinstance(err, (CorruptPayload, Truncated, TrailingData))


def test_inner_final_tag_is_refused(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.bundle import crypto

    real_push = crypto.Encryptor.push
    calls = {"n": 0}

    def push(self: crypto.Encryptor, chunk: bytes, final: bool) -> bytes:
        calls["n"] += 1
        return real_push(self, chunk, final or calls["n"] == 2)

    monkeypatch.setattr(crypto.Encryptor, "push", push)
    data = _multi_chunk(pair)
    monkeypatch.setattr(crypto.Encryptor, "push", real_push)
    err = refused(pair, forge.write(pair.root / "f2.cvb", data))
    assert isinstance(err, CorruptPayload) and "final" in err.detail


def test_swapped_chunks_are_refused_even_when_resigned(pair: Pair) -> None:
    parts = forge.split(_multi_chunk(pair))
    parts.chunks[1], parts.chunks[2] = parts.chunks[2], parts.chunks[1]
    err = refused(pair, forge.write(pair.root / "s.cvb",
                                    parts.assemble(pair.exporter.identity())))
    assert isinstance(err, CorruptPayload)


def test_header_of_one_bundle_with_payload_of_another(pair: Pair) -> None:
    a = forge.split(seal(pair, [conv("a", ["one"])], name="a.cvb").path.read_bytes())
    b = forge.split(seal(pair, [conv("b", ["two"])], name="b.cvb").path.read_bytes())
    mixed = forge.Parts(a.header, b.stream_header, b.chunks, b"\x00" * 64, a.prefix)
    target = forge.write(pair.root / "m.cvb", mixed.assemble())
    assert isinstance(refused(pair, target), BadSignature)
    forge.write(target, mixed.assemble(pair.exporter.identity()))
    assert isinstance(refused(pair, target), CorruptPayload)


def test_resigned_by_untrusted_key(pair: Pair) -> None:
    parts = forge.split(seal(pair, [conv("c1", ["hi"])]).path.read_bytes())
    mallory = keys.generate("mallory", "exporter")
    header = bytearray(parts.header)
    header[40:72] = mallory.sign_pk
    parts.header = bytes(header)
    err = refused(pair, forge.write(pair.root / "u.cvb", parts.assemble(mallory)))
    assert isinstance(err, UntrustedSigner) and err.exit_code == 4


def test_not_sealed_to_this_vault(pair: Pair, tmp_path: Path) -> None:
    other = make_pair(tmp_path / "other")
    sealed = bundle.seal_jsonl(write_jsonl(tmp_path / "x.jsonl", [conv("c", ["x"])]),
                               tmp_path / "x.cvb", pair.exporter.identity(),
                               [other.vault.public()], source="web", sequence=1)
    err = refused(pair, sealed.path)
    assert isinstance(err, NotARecipient) and err.exit_code == 3


def test_revoked_signer(pair: Pair) -> None:
    sealed = seal(pair, [conv("c1", ["hi"])])
    t = pair.vault.trust()
    t.revoke(pair.exporter.public().fingerprint)
    t.save()
    err = refused(pair, sealed.path)
    assert isinstance(err, RevokedSigner) and err.exit_code == 4


def test_declared_size_smaller_than_real_is_a_bomb(pair: Pair) -> None:
    class Liar(bundle.BundleWriter):
        def _encrypt(self, meta, payload_size):  # type: ignore[no-untyped-def]
            self.plaintext_size = 200
            return super()._encrypt(meta, payload_size)

    big = canonical.dumps(conv("bomb", ["\x00" * (8 * 1024 * 1024)]))
    w = Liar(pair.root / "bomb.cvb", pair.exporter.identity(), [pair.vault.public()],
             source="web", sequence=1)
    w.add_record(big, records.canonical_line(big, "bomb")[1])
    sealed = w.finish()
    err = refused(pair, sealed.path)
    assert isinstance(err, Oversize)


def test_limits_are_checked_before_crypto(pair: Pair) -> None:
    data = bytearray(seal(pair, [conv("c1", ["hi"])]).path.read_bytes())
    too_big = bytearray(data)
    too_big[24:32] = (10**15).to_bytes(8, "big")
    err = refused(pair, forge.write(pair.root / "o.cvb", bytes(too_big)))
    assert isinstance(err, Oversize)
    newer = bytearray(data)
    newer[8:10] = (2).to_bytes(2, "big")
    err = refused(pair, forge.write(pair.root / "v.cvb", bytes(newer)))
    assert isinstance(err, UnsupportedVersion) and "newer" in err.detail


# -- the format is the only contract ----------------------------------------------------

def test_fresh_process_opens_what_another_sealed(pair: Pair, proc, sample_jsonl) -> None:
    pub = pair.vault.public_key
    r = proc("bundle", "seal", sample_jsonl, "--home", pair.exporter_path, "--to", pub,
             "--source", "web", "--seq", "1", "-o", pair.root / "p.cvb", "--json")
    assert r.code == 0, r.err
    r = proc("bundle", "open", pair.root / "p.cvb", "--home", pair.vault_path,
             "-o", pair.root / "p.jsonl")
    assert r.code == 0, r.err
    assert len((pair.root / "p.jsonl").read_text().splitlines()) == 6
