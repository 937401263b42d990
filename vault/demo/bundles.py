"""Demo stage: keys, sealing the sample, inspect, verify, open, tampering refused."""

from __future__ import annotations

import shutil

from vault import bundle, home
from vault.demo import Demo, sample_path
from vault.errors import ChatvaultError


def run(demo: Demo) -> None:
    demo.step("Two homes: an online exporter and an offline vault")
    exp = home.create("exporter", demo.root / "exporter", "demo-exporter")
    vlt = home.create("vault", demo.root / "vault", "demo-vault")
    exp_trust = exp.trust()
    exp_trust.trust(vlt.public_key.read_text(), "vault", str(vlt.public_key))
    exp_trust.save()
    vlt_trust = vlt.trust()
    vlt_trust.trust(exp.public_key.read_text(), "exporter", str(exp.public_key))
    vlt_trust.save()
    demo.ok(f"exporter key {exp.public().fingerprint}")
    demo.ok(f"vault key    {vlt.public().fingerprint}")
    demo.info("each side trusts the other's public key for its role")
    demo.state.update(exporter=exp, vault=vlt)

    demo.step("Seal the built-in sample into a signed, encrypted bundle")
    out = demo.root / "sealed" / bundle.file_name("sample", 1)
    out.parent.mkdir()
    sealed = bundle.seal_jsonl(sample_path(), out, exp.identity(), [vlt.public()],
                               source="sample", sequence=1)
    c = sealed.meta["counts"]
    demo.ok(f"{out.name}: {c['conversations']} conversations, {c['messages']} messages, "
            f"{sealed.size} bytes, sha256 {sealed.sha256[:16]}…")

    demo.step("Inspect (no key), verify (trust + signature), open (decrypt)")
    info = bundle.inspect(out)
    demo.info(f"header says: source {info['meta']['source']} #{info['meta']['sequence']}, "
              f"signer {info['meta']['signer']}")
    v = bundle.verify(out, vlt.trust())
    demo.ok(f"signature verified against the vault's trust store ({v.signer.public.name})")
    opened = demo.root / "opened.jsonl"
    _, count = bundle.open_to_jsonl(out, vlt.identity(), vlt.trust(), opened)
    same = opened.read_bytes() == _canonical_sample()
    demo.ok(f"opened {count} conversations; identical to the canonical sample: {same}")

    demo.step("A tampered copy is refused before anything is decrypted")
    bad = demo.root / "tampered.cvb"
    shutil.copy(out, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    try:
        bundle.open_to_jsonl(bad, vlt.identity(), vlt.trust(), demo.root / "never.jsonl")
        demo.refused("tampered bundle was accepted: this is a bug")
        raise SystemExit(1)
    except ChatvaultError as exc:
        demo.refused(f"refused ({exc.code}, exit {exc.exit_code}): {exc.detail}")
    demo.info(f"no output written: {not (demo.root / 'never.jsonl').exists()}")
    demo.state["sample_bundle"] = out


def _canonical_sample() -> bytes:
    from vault import records

    lines = []
    for raw in sample_path().read_bytes().splitlines():
        if raw.strip():
            lines.append(records.canonical_line(raw, "sample")[0] + b"\n")
    return b"".join(lines)
