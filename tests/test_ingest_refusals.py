"""What the vault refuses, copies and writes back when a stick is inserted again and again.

Findings of a hostile new-user trial: junk files were copied whole into
quarantine and read again at every insertion, bundles already held were
copied to staging every time, receipts were rewritten at every insertion
and stayed on the stick after their file had gone, a fork's reason said
"fork: fork:", and refusals named the staging copy. Bytes read and written
are measured with the kernel's own counters (``/proc/self/io``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, make_pair
from vault import ingest, receipts, staging, vaultstatus
from vault.bundle import layout
from vault_kit import Chain, conv, count, open_store, outbox, stick

MiB = 1024 * 1024
#: what "a small bounded sample kept as evidence" may be at most
EVIDENCE_MAX = 64 * 1024


def io_counters() -> dict[str, int]:
    """Bytes this process read and wrote through system calls so far."""
    pairs = (line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def sparse_junk(path: Path, size: int, head: bytes = b"PK\x03\x04 not a bundle") -> Path:
    """A large file that costs no disk: some bytes at the start and at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.seek(size - 16)
        fh.write(b"the very end....")
    return path


def on_stick_receipts(media_root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each receipt file on the stick: (inode, mtime in ns, content)."""
    out = {}
    for p in receipts.on_media(media_root):
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out


def largest_file(folder: Path) -> int:
    return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)


# -- finding 1: junk on the stick -------------------------------------------------------

def test_junk_is_refused_on_its_first_bytes_and_recognised_later(pair: Pair,
                                                                 tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    junk = sparse_junk(outbox(media_root) / "huge-00000001.cvb", 512 * MiB)
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"])])

    before = io_counters()
    outs = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, media_root)}
    first = io_counters()

    refused = outs["huge-00000001.cvb"]
    assert (refused.status, refused.code, refused.exit_code) == ("quarantined", "bad_magic", 3)
    assert refused.reason == "bad_magic: not a chatvault bundle (bad magic bytes)"
    assert outs["web-00000001.cvb"].status == "ingested"
    assert first["rchar"] - before["rchar"] < 32 * MiB, "the junk was read in bulk"
    assert first["wchar"] - before["wchar"] < 32 * MiB, "the junk was copied"
    assert junk.stat().st_size == 512 * MiB, "the file stays on the stick"
    quarantined = pair.vault_path / "quarantine"
    assert largest_file(quarantined) <= EVIDENCE_MAX
    [head] = quarantined.glob("huge-00000001.*.head")
    with open(junk, "rb") as fh:
        assert head.read_bytes() == fh.read(staging.EVIDENCE_BYTES)
    reason = json.loads(head.with_name(head.name + ".reason.json").read_text())
    assert (reason["code"], reason["size"], reason["sha256"]) == ("bad_magic", 512 * MiB, None)
    assert staging.pending(pair.vault_path) == []
    with open_store(pair) as conn:
        assert conn.execute("SELECT file, code, path FROM quarantine").fetchall() == [
            ("huge-00000001.cvb", "bad_magic", f"quarantine/{head.name}")]
    trust = pair.exporter.trust()
    said = {r.body["bundle_file"]: r for r in (receipts.verify_file(p, trust)
                                              for p in receipts.on_media(media_root))}
    assert said["huge-00000001.cvb"].status == "quarantined"
    assert said["huge-00000001.cvb"].body["reason"] == refused.reason
    written = on_stick_receipts(media_root)
    home_copies = sorted((pair.vault_path / "receipts").iterdir())

    again = {o.bundle_file: o for o in ingest.ingest_media(pair.vault_path, media_root)}
    second = io_counters()

    assert second["rchar"] - first["rchar"] < 32 * MiB, "the junk was read again"
    seen = again["huge-00000001.cvb"]
    assert (seen.status, seen.code, seen.recognised) == ("quarantined", "bad_magic", True)
    assert seen.reason == refused.reason and seen.exit_code == 3
    assert on_stick_receipts(media_root) == written, "receipts rewritten"
    assert sorted((pair.vault_path / "receipts").iterdir()) == home_copies
    rep = vaultstatus.report(pair.vault_path)
    assert any(f["check"] == "quarantine" and f["data"]["file"] == "huge-00000001.cvb"
               for f in rep["findings"])
    with open_store(pair) as conn:
        assert count(conn, "quarantine") == 1


def _bundle(pair: Pair, folder: Path) -> Path:
    return Chain(pair, folder).seal([conv("c1", ["x" * 3000])]).path


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


@pytest.mark.parametrize("case,code", [
    ("newer-version", "unsupported_version"),
    ("reserved-field", "malformed_header"),
    ("cut-short", "truncated"),
    ("bytes-appended", "trailing_data"),
    ("declares-too-much", "oversize"),
    ("larger-than-any-bundle", "oversize"),
])
def test_every_first_bytes_refusal_copies_nothing(pair: Pair, tmp_path: Path, case: str,
                                                  code: str) -> None:
    cfg = pair.vault.config
    limit = 1 * MiB
    cfg.write_text(cfg.read_text().replace("max_plaintext_bytes = 68719476736",
                                           f"max_plaintext_bytes = {limit}"))
    media_root = stick(tmp_path / "stick")
    good = _bundle(pair, tmp_path / "made").read_bytes()
    target = outbox(media_root) / "web-00000001.cvb"
    if case == "newer-version":
        target.write_bytes(_patched(good, 8, (2).to_bytes(2, "big")))
    elif case == "reserved-field":
        target.write_bytes(_patched(good, 10, b"\x00\x01"))
    elif case == "cut-short":
        target.write_bytes(good[:-100])
    elif case == "bytes-appended":
        target.write_bytes(good + b"\x00" * 5000)
    elif case == "declares-too-much":
        target.write_bytes(_patched(good, 24, (limit + 1).to_bytes(8, "big")))
    else:
        sparse_junk(target, staging.max_bundle_bytes(limit) + 1, good[:layout.PREFIX_BYTES])

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert (out.status, out.code) == ("quarantined", code), out.reason
    if case == "newer-version":
        assert "upgrade" in (out.reason or "")
    assert largest_file(pair.vault_path / "quarantine") <= EVIDENCE_MAX
    assert list((pair.vault_path / "quarantine").glob("*.cvb")) == []
    assert list((pair.vault_path / "staging").glob("*.cvb")) == []
    assert target.exists()
    [r] = receipts.on_media(media_root)
    assert receipts.verify_file(r, pair.exporter.trust()).status == "quarantined"


# -- finding 1: bundles left on the stick ---------------------------------------------

def test_bundles_already_held_are_not_copied_again(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    noise = os.urandom(24 * MiB)
    sealed = Chain(pair, outbox(media_root)).seal(
        [conv("c1", ["see attached"])], blobs={hashlib.sha256(noise).hexdigest(): noise})
    [first] = ingest.ingest_media(pair.vault_path, media_root)
    assert first.status == "ingested"
    written = on_stick_receipts(media_root)

    before = io_counters()
    [again] = ingest.ingest_media(pair.vault_path, media_root)
    after = io_counters()

    assert after["wchar"] - before["wchar"] < 8 * MiB, "the held bundle was copied again"
    assert (again.status, again.recognised) == ("duplicate", True)
    assert on_stick_receipts(media_root) == written, "the 'ingested' receipt was replaced"
    assert staging.pending(pair.vault_path) == []
    assert sealed.path.exists()


def test_a_copy_whose_bytes_differ_is_never_skipped(pair: Pair, tmp_path: Path) -> None:
    """Same name, same size, same dates, one byte changed in the middle: judged afresh."""
    media_root = stick(tmp_path / "stick")
    sealed = Chain(pair, outbox(media_root)).seal([conv("c1", ["x" * 200_000])])
    ingest.ingest_media(pair.vault_path, media_root)
    st = sealed.path.stat()
    data = bytearray(sealed.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.path.write_bytes(bytes(data))
    os.utime(sealed.path, ns=(st.st_atime_ns, st.st_mtime_ns))

    [out] = ingest.ingest_media(pair.vault_path, media_root)

    assert out.status == "quarantined" and out.code in ("bad_signature", "corrupt_payload")
    assert out.sha256 == hashlib.sha256(bytes(data)).hexdigest()
    [r] = receipts.on_media(media_root)
    assert receipts.verify_file(r, pair.exporter.trust()).status == "quarantined"


def test_a_refused_bundle_is_judged_again_from_its_kept_copy(pair: Pair,
                                                            tmp_path: Path) -> None:
    """Trusting its signer later lets it in, without copying it from the stick again."""
    media_root = stick(tmp_path / "stick")
    stranger = make_pair(tmp_path / "stranger")
    to_us = Pair(stranger.exporter, pair.vault, tmp_path)  # sealed to us, signed by a stranger
    noise = os.urandom(16 * MiB)
    Chain(to_us, outbox(media_root)).seal(
        [conv("s1", ["hello"])], blobs={hashlib.sha256(noise).hexdigest(): noise})
    [refused] = ingest.ingest_media(pair.vault_path, media_root)
    assert refused.code == "untrusted_signer"

    before = io_counters()
    [still] = ingest.ingest_media(pair.vault_path, media_root)
    after = io_counters()
    assert (still.status, still.code) == ("quarantined", "untrusted_signer")
    assert after["wchar"] - before["wchar"] < 8 * MiB, "copied from the stick again"

    t = pair.vault.trust()
    t.trust(stranger.exporter.public_key.read_text(), "exporter")
    t.save()
    [now] = ingest.ingest_media(pair.vault_path, media_root)
    assert now.status == "ingested"
    assert not [f for f in vaultstatus.report(pair.vault_path)["findings"]
                if f["check"] == "quarantine"], "resolved by the good copy"


def test_a_refused_copy_leaves_nothing_in_staging(pair: Pair, tmp_path: Path) -> None:
    """The copy moves to quarantine; its '.staged.json' sidecar went nowhere and piled up."""
    media_root = stick(tmp_path / "stick")
    stranger = make_pair(tmp_path / "stranger")
    Chain(Pair(stranger.exporter, pair.vault, tmp_path), outbox(media_root)).seal(
        [conv("s1", ["hello"])])
    [refused] = ingest.ingest_media(pair.vault_path, media_root)
    assert (refused.status, refused.code) == ("quarantined", "untrusted_signer")
    assert len(list((pair.vault_path / "quarantine").glob("*.cvb"))) == 1
    assert list(staging.folder(pair.vault_path).iterdir()) == []


# -- findings 4 and 5: what refusals say ------------------------------------------------

@pytest.mark.parametrize("case", ["same-sequence", "prev-mismatch", "restart",
                                  "first-with-prev", "successor-disagrees"])
def test_chain_refusals_say_fork_once(pair: Pair, tmp_path: Path, case: str) -> None:
    ch = Chain(pair, tmp_path / "made")
    one = ch.seal([conv("c1", ["one"])])
    held = [one.path]
    if case == "same-sequence":
        other = ch.seal([conv("c9", ["other"])], sequence=1, prev=None, name="other.cvb")
    elif case == "prev-mismatch":
        other = ch.seal([conv("c2", ["two"])], prev="ab" * 32)
    elif case == "restart":
        other = ch.seal([conv("c2", ["two"])], prev=None)
    elif case == "first-with-prev":
        held = []
        other = ch.seal([conv("c1", ["one"])], sequence=1, prev="ef" * 32, name="o.cvb")
        ch.seal([conv("c2", ["two"])], sequence=5, prev="cd" * 32, name="five.cvb")
        held = [tmp_path / "made" / "five.cvb"]
    else:
        ch.seal([conv("c2", ["two"])])
        held = [tmp_path / "made" / "web-00000002.cvb"]
        other = ch.seal([conv("c1", ["rewritten"])], sequence=1, prev=None, name="o.cvb")
    for f in held:
        [o] = ingest.ingest_staged(pair.vault_path, staging.stage_files(pair.vault_path, [f]))
        assert o.status == "ingested", o.reason

    [out] = ingest.ingest_staged(pair.vault_path,
                                 staging.stage_files(pair.vault_path, [other.path]))

    assert out.code == "fork"
    assert (out.reason or "").count("fork:") == 1 and out.reason.startswith("fork: ")
    assert not re.match(r"fork: (rollback|fork)", out.reason)
    status = " ".join(f["message"] for f in vaultstatus.report(pair.vault_path)["findings"])
    assert "fork: fork" not in status and "(fork:" not in status


def test_refusals_name_the_file_as_the_operator_knows_it(pair: Pair, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture,
                                                         cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    stranger = make_pair(tmp_path / "stranger")
    Chain(stranger, outbox(media_root)).seal([conv("s1", ["who am I"])], source="cases",
                                             sequence=6, prev="aa" * 32)
    loose = Chain(stranger, tmp_path / "loose").seal([conv("s2", ["x"])], source="desk")
    caplog.set_level(logging.DEBUG, "vault")

    res = cli("vault", "ingest", media_root, loose.path, "--home", pair.vault_path, "--json")

    assert res.code == 4
    outs = {o["bundle_file"]: o for o in res.json()["outcomes"]}
    assert outs["cases-00000006.cvb"]["reason"].startswith(
        "untrusted_signer: signer of cases-00000006.cvb is not in the trust store")
    assert outs["desk-00000001.cvb"]["path"] == str(loose.path)
    text = cli("vault", "ingest", loose.path, "--home", pair.vault_path)
    assert str(loose.path) in text.out
    staged_name = re.compile(r"\b[0-9a-f]{16}\.(cases|desk)-")
    everything = [res.out, text.out, text.err, caplog.text]
    everything += [p.read_text() for p in (pair.vault_path / "quarantine").glob("*.json")]
    everything += [p.read_text() for p in receipts.on_media(media_root)]
    with open_store(pair) as conn:
        everything += [r for (r,) in conn.execute("SELECT reason FROM quarantine")]
    assert not [t for t in everything if staged_name.search(t)]


# -- finding 6: receipts on the stick ---------------------------------------------------

def test_receipts_are_not_rewritten_and_stale_ones_go(pair: Pair, tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    box = outbox(media_root)
    ch = Chain(pair, box)
    ch.seal([conv("c1", ["one"])])
    junk = sparse_junk(box / "notes-00000001.cvb", 4 * MiB)
    damaged = ch.seal([conv("c2", ["two"])])
    data = bytearray(damaged.path.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged.path.write_bytes(bytes(data))
    ingest.ingest_media(pair.vault_path, media_root)
    first = on_stick_receipts(media_root)
    assert len(first) == 3

    assert ingest.ingest_media(pair.vault_path, media_root) and \
        on_stick_receipts(media_root) == first
    # Another vault's receipt about a file that is gone is not ours to remove.
    other = make_pair(tmp_path / "other")
    doc = receipts.make(other.vault.identity(), bundle_file="gone-00000001.cvb",
                        bundle_sha256="00" * 32, status="quarantined", reason="bad_magic: x")
    theirs = receipts.write(media_root, doc)

    junk.unlink()
    damaged.path.unlink()
    ch.seal([conv("c3", ["three"])])
    ingest.ingest_media(pair.vault_path, media_root)

    left = {r.body["bundle_file"]: r.status for r in (
        receipts.verify_file(p, pair.exporter.trust()) for p in receipts.on_media(media_root)
        if p != theirs)}
    assert left == {"web-00000001.cvb": "ingested", "web-00000003.cvb": "ingested"}
    assert theirs.exists()
    kept = on_stick_receipts(media_root)
    for name, seen in first.items():
        if name.startswith("web-00000001"):
            assert kept[name] == seen


def test_daemon_reinsertion_needs_no_file_after_unmount(pair: Pair, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    """The daemon ingests after unmounting: held and refused files need nothing more."""
    from test_daemon import LOOP, FakeMedia, _daemon
    from vault.udevwatch import Device

    class Vanishing(FakeMedia):
        """Unmounted, the stick's files are really out of reach."""

        def mount(self, *args: Any, **kw: Any) -> Any:
            away = self.folder.with_name("away")
            if away.exists():
                away.rename(self.folder)
            return super().mount(*args, **kw)

        def unmount(self, *args: Any, **kw: Any) -> None:
            super().unmount(*args, **kw)
            self.folder.rename(self.folder.with_name("away"))

    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"])])
    sparse_junk(outbox(media_root) / "huge-00000001.cvb", 64 * MiB)
    fake = Vanishing(media_root).install(monkeypatch)
    caplog.set_level(logging.INFO, "vault")
    _daemon(pair).handle(Device.from_properties(LOOP))
    fake.mount("/dev/loop9", "exfat", media_root, readonly=True, devnum=(7, 9))
    said = on_stick_receipts(media_root)
    fake.unmount(None)  # type: ignore[arg-type]
    caplog.clear()

    _daemon(pair).handle(Device.from_properties(LOOP))

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "2 bundle(s): 1 duplicate, 1 quarantined" in caplog.text
    assert "0 receipt(s) written" in caplog.text
    fake.mount("/dev/loop9", "exfat", media_root, readonly=True, devnum=(7, 9))
    assert on_stick_receipts(media_root) == said


def test_a_good_file_of_the_same_name_does_not_settle_a_stranger_s(pair: Pair,
                                                                  tmp_path: Path) -> None:
    """A forged web-00000001.cvb stays to be looked into when the real one arrives."""
    stranger = make_pair(tmp_path / "stranger")
    forged_stick = stick(tmp_path / "forged")
    forged = Chain(Pair(stranger.exporter, pair.vault, tmp_path), outbox(forged_stick))
    bad = forged.seal([conv("s1", ["pay here"])])
    [refused] = ingest.ingest_media(pair.vault_path, forged_stick)
    assert refused.code == "untrusted_signer"

    good_stick = stick(tmp_path / "good")
    good = Chain(pair, outbox(good_stick)).seal([conv("c1", ["hello"])])
    assert good.path.name == bad.path.name
    [ok] = ingest.ingest_media(pair.vault_path, good_stick)
    assert ok.status == "ingested"
    open_ = [f for f in vaultstatus.report(pair.vault_path)["findings"]
             if f["check"] == "quarantine"]
    assert open_ and "untrusted_signer" in str(open_), "the forged file was forgotten"


def test_quarantine_keeps_large_refused_copies_as_heads(pair: Pair, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stick must not fill the vault's disk with copies that fail their signature."""
    from vault import quarantine

    monkeypatch.setattr(quarantine, "WHOLE_MAX", 64 * 1024)
    monkeypatch.setattr(quarantine, "HEAD_BYTES", 4096)
    root = stick(tmp_path / "stick")
    noise = os.urandom(200_000)
    sealed = Chain(pair, outbox(root)).seal([conv("c1", ["x"])],
                                            blobs={hashlib.sha256(noise).hexdigest(): noise})
    data = bytearray(sealed.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.path.write_bytes(bytes(data))

    [out] = ingest.ingest_media(pair.vault_path, root)
    assert out.status == "quarantined" and out.sha256 == hashlib.sha256(data).hexdigest()
    kept = sorted((pair.vault_path / "quarantine").iterdir())
    assert [p.suffix for p in kept] == [".head", ".json"]
    assert kept[0].read_bytes() == bytes(data[:4096])
    reason = json.loads(kept[1].read_text())
    assert reason["size"] == len(data) and "the first 4096 bytes" in reason["kept"]
    assert staging.pending(pair.vault_path) == []
    assert sealed.path.read_bytes() == bytes(data), "the stick's file is left as it was"
    [again] = ingest.ingest_media(pair.vault_path, root)  # read again, kept once
    assert again.status == "quarantined"
    assert len(list((pair.vault_path / "quarantine").iterdir())) == 2


def test_quarantine_keeps_heads_once_its_budget_is_spent(pair: Pair, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import quarantine

    root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(root))
    first, second = chain.seal([conv("c1", ["x" * 5000])]), chain.seal([conv("c2", ["y"])])
    monkeypatch.setattr(quarantine, "TOTAL_MAX", first.size + 10)
    for sealed in (first, second):
        data = bytearray(sealed.path.read_bytes())
        data[-10] ^= 0x01
        sealed.path.write_bytes(bytes(data))
    outs = ingest.ingest_media(pair.vault_path, root)
    assert [o.status for o in outs] == ["quarantined", "quarantined"]
    kept = sorted(p.name for p in (pair.vault_path / "quarantine").iterdir()
                  if not p.name.endswith(".json"))
    assert [n.rsplit(".", 1)[1] for n in kept] == ["cvb", "head"]


def test_a_full_vault_disk_is_not_blamed_on_the_stick(pair: Pair, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      cli: Any) -> None:
    """Staging has no room: the vault's disk is to be freed; another stick would not help."""
    from vault import media

    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"])])
    real = media.free_bytes
    vault_disk = staging.folder(pair.vault_path)
    monkeypatch.setattr(media, "free_bytes",
                        lambda p: 4096 if Path(p) == vault_disk else real(p))
    res = cli("vault", "ingest", media_root, "--home", pair.vault_path)
    assert res.code == 5
    [line] = res.err.strip().splitlines()[-1:]
    assert "vault's own disk is full" in line and "another stick" not in line
    with open_store(pair) as conn:
        assert count(conn, "conversations") == 0
    assert list(outbox(media_root).iterdir()), "the bundle stays on the stick"
