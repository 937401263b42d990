"""Demo stage: a restore set opened online, a rebuild from the archive, and a restore drill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vault import drill, rebuild, restore, restoreopen, statefile, store
from vault.demo import Demo
from vault.home import Home


def _sources(vlt: Home) -> dict[str, str]:
    """Every conversation the vault holds: {"source/id": stored hash}."""
    conn = store.open_store(vlt.path / store.FILE_NAME)
    try:
        return dict(conn.execute("SELECT source || '/' || conversation_id, content_sha256 "
                                 "FROM conversations"))
    finally:
        conn.close()


def run(demo: Demo) -> None:
    exp: Home = demo.state["exporter"]
    vlt: Home = demo.state["vault"]
    held = _sources(vlt)
    names = sorted({key.split("/", 1)[0] for key in held})

    demo.step("The vault seals a restore set for the online side")
    out = demo.root / "restore-set"
    out.mkdir()
    parts: list[Path] = []
    for name in names:
        made = restore.create(vlt.path, vlt.identity(), [exp.public()],
                              restore.Selection(source=name), out, purpose="demo")
        parts += [Path(p["path"]) for p in made.parts]
        left = sum(made.excluded.values())
        demo.ok(f"source {name}: {made.conversations} conversations, {made.blobs} attachments "
                f"in {len(made.parts)} part(s), {left} left out (erased or restricted)")
    demo.info("signed by the vault, sealed to the exporter's key, read back after writing")

    demo.step("The online side opens it: vault signature checked, then decrypted")
    opened = restoreopen.open_bundles(parts, exp.identity(), exp.trust(),
                                      demo.root / "restored", native=True)
    same = all(held.get(f"{s}/{c}") == sha for (s, c), sha in opened.hashes.items())
    for name, info in sorted(opened.sources.items()):
        native = f", native {info['format']} export in {info['native']}/" if info["native"] \
            else ""
        demo.ok(f"{info['jsonl']}: {info['conversations']} conversations{native}")
    demo.ok(f"every conversation byte-identical to what the vault holds: {same}")

    demo.step("Archive + state file + key are a complete backup: rebuild and compare")
    info = statefile.describe(vlt.path)
    demo.info(f"state file {Path(info['path']).name} #{info['sequence']} (signed, encrypted to "
              f"the vault's own key), current: {info['current']}")
    rebuilt = rebuild.rebuild(demo.root / "vault-rebuilt", home=vlt.path)
    live = rebuild.digest_of(vlt.path)
    demo.ok(f"rebuilt from {rebuilt.ingested} archived bundles: digest "
            f"{rebuilt.digest['digest'][:16]}…, live {live['digest'][:16]}…, equal: "
            f"{rebuilt.digest['digest'] == live['digest']}")

    demo.step("Restore drill: the whole loop, measured and signed")
    report = drill.run(vlt.path, every=True)
    _show(demo, report["body"])


def _show(demo: Demo, body: dict[str, Any]) -> None:
    c = body["counts"]
    demo.info(f"bundles {len(body['bundles'])}, records {c['records']}, comparisons "
              f"{c['compared']}, matched {c['matched']}, mismatches {body['mismatch_count']}")
    demo.info(f"expected absent: erased {c['erased']}, purged {c['purged']}, restricted "
              f"{c['restricted']}; restored {c['restored']} conversations, "
              f"{c['attachments']} attachments")
    for step, secs in body["steps"].items():
        demo.info(f"{step:16} {secs * 1000:9.1f} ms")
    demo.info(f"{'recovery time':16} {body['recovery_seconds'] * 1000:9.1f} ms "
              "(restore create + open)")
    if body["passed"]:
        demo.ok(f"drill {body['drill_id'][:16]} PASSED; signed report kept in H/reports/, "
                "listed by 'chatvault drill list'")
    else:
        demo.refused(f"drill FAILED: {body['mismatches']}")
