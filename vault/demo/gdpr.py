"""Demo stage: find a person, export their DSAR package, erase them, replay, still erased."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape

from vault import bundle, dsar, erasure, ingest, media, subjects
from vault.demo import Demo, sample_path
from vault.home import Home

EMAIL, PHONE = "MARA.QUINT@example.org", "07700 900123"


def _find(demo: Demo, v: subjects.VaultHandle, subject: subjects.Subject) -> int:
    out = subjects.find_for(v, subject, purpose="demo")
    for r in out["results"]:
        demo.info(escape(f"{r['source']}/{r['conversation_id']} [{r['match']}]: "
                         f"{'; '.join(r['reasons'])}"))
    return len(out["results"])


def _resealed(demo: Demo, v: subjects.VaultHandle, source: str) -> Path:
    """The same sample, sealed again as the exporter's next bundle of ``source``."""
    seq, prev = v.conn.execute("SELECT sequence, sha256 FROM bundles WHERE source = ? "
                               "ORDER BY sequence DESC LIMIT 1", (source,)).fetchone()
    stick = demo.root / "stick-again"
    target = stick / media.ROOT / media.OUTBOX / bundle.file_name(source, seq + 1)
    target.parent.mkdir(parents=True)
    exp: Home = demo.state["exporter"]
    vlt: Home = demo.state["vault"]
    bundle.seal_jsonl(sample_path(), target, exp.identity(), [vlt.public()], source=source,
                      sequence=seq + 1, prev_hash=prev)
    return stick


def run(demo: Demo) -> None:
    vlt: Home = demo.state["vault"]
    with subjects.open_vault(vlt.path) as v:
        subject = subjects.Subject.parse(emails=[EMAIL], phones=[PHONE], region=v.region)

        demo.step("Subject search: everything about Mara Quint, written any way")
        demo.info(f"searching for {EMAIL} and {PHONE} (normalised as at ingest)")
        demo.ok(f"{_find(demo, v, subject)} conversation(s), each with why it matched")

        demo.step("Access request (Art. 15): a case with its due date, and the package")
        case = dsar.open_case(v, dsar.today(), subject, "demo request")
        demo.ok(f"{case.id} received {case.received}, due {case.due}")
        out = demo.root / "dsar"
        out.mkdir()
        result = dsar.export(v, case.id, out)
        pkg = Path(result["path"])
        demo.ok(f"package {pkg}: {result['conversations']} conversation(s), "
                f"{result['files']} files, {result['redactions']} redaction(s) of others")
        manifest = json.loads((pkg / "manifest.json").read_text())
        demo.info("files: " + ", ".join(f["path"] for f in manifest["files"][:6]) + " …")

        demo.step("Erasure (Art. 17): customer conversations removed, mentions redacted")
        plan = erasure.plan(v, subject)
        demo.info(f"plan: remove {', '.join(plan.as_dict()['remove'])}; redact in "
                  f"{', '.join(plan.as_dict()['redact'])}")
        eid = erasure.request(v, subject, "demo: the subject asked to be erased", case.id)
        counts = erasure.execute(v, eid, subject, "demo: the subject asked to be erased")
        demo.ok(f"{eid}: {counts['conversations_removed']} removed, "
                f"{counts['conversations_redacted']} redacted, "
                f"{counts['tombstones_added']} tombstones (keyed hashes)")
        scrub = counts["scrub"]
        demo.ok(f"store scrubbed: FTS5 optimised, WAL truncated, byte scan for "
                f"{scrub['scanned_for']} written forms found {scrub['found']}")
        source = v.conn.execute("SELECT DISTINCT source FROM bundles").fetchone()[0]
        again = _resealed(demo, v, source)

    demo.step("The old data comes back on a stick: the person stays erased")
    old = demo.state.get("stick")
    if old is not None:
        for o in ingest.ingest_media(vlt.path, Path(old), media_label="OLD-STICK"):
            demo.ok(f"old stick {o.bundle_file}: {o.status}")
    for o in ingest.ingest_media(vlt.path, again, media_label="RE-EXPORT"):
        c = o.counts
        demo.ok(f"re-sealed {o.bundle_file}: {o.status}; {c.get('tombstoned', 0)} "
                f"conversation(s) left out, {c.get('redacted', 0)} stored redacted")
    with subjects.open_vault(vlt.path) as v:
        left = _find(demo, v, subject)
        redacted = v.conn.execute("SELECT text FROM messages WHERE text LIKE "
                                  "'%[erased e-mail]%' LIMIT 1").fetchone()
    demo.ok(f"subject search after the replay: {left} conversation(s)")
    if redacted:
        demo.info(escape(f"a conversation that only mentioned her reads: {redacted[0]!r}"))
