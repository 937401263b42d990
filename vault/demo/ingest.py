"""Demo stage: the vault ingests the stick, writes receipts, and reports its status."""

from __future__ import annotations

import shutil
from pathlib import Path

from vault import bundle, ingest, media, store, vaultstatus
from vault.demo import Demo, sample_path
from vault.home import Home


def _stick(demo: Demo) -> Path:
    """The stick the exporter stage filled, or one holding the sample sealed here."""
    stick = demo.state.get("stick")
    if stick is not None:
        return Path(stick)
    stick = demo.root / "stick"
    target = stick / media.ROOT / media.OUTBOX
    target.mkdir(parents=True)
    made = demo.state.get("sample_bundle")
    if made is not None:
        shutil.copy(made, target / Path(made).name)
    else:
        exp: Home = demo.state["exporter"]
        vlt: Home = demo.state["vault"]
        bundle.seal_jsonl(sample_path(), target / bundle.file_name("sample", 1),
                          exp.identity(), [vlt.public()], source="sample", sequence=1)
    demo.state["stick"] = stick
    return stick


def run(demo: Demo) -> None:
    vlt: Home = demo.state["vault"]
    stick = _stick(demo)

    demo.step("The vault ingests the stick: verify, decrypt, validate, store, receipt")
    for o in ingest.ingest_media(vlt.path, stick, media_label="DEMO-STICK"):
        c = o.counts
        demo.ok(f"{o.bundle_file}: {o.status}, {c.get('conversations', 0)} conversations, "
                f"{c.get('messages', 0)} messages{'; ' + o.reason if o.reason else ''}")
    for path in sorted((stick / media.ROOT / media.RECEIPTS).glob("*.receipt.json")):
        demo.info(f"signed receipt on the stick: {path.name}")
    demo.info(f"sealed bundles archived under {vlt.path / 'archive'}")

    demo.step("The same stick again: nothing is doubled")
    again = ingest.ingest_media(vlt.path, stick, media_label="DEMO-STICK")
    demo.ok(", ".join(f"{o.bundle_file}: {o.status}" for o in again))
    conn = store.open_store(vlt.path / store.FILE_NAME)
    try:
        n = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        demo.info(f"{n} conversations in the store")
        for query in ("mara.quint@example.org", "Strasse", "+44 7700 900123"):
            hits = store.search(conn, query, region="GB")
            demo.ok(f"full-text search {query!r}: {len(hits)} message(s) "
                    f"({', '.join(sorted({h.conversation_id for h in hits}))})")
    finally:
        conn.close()

    demo.step("vault status")
    rep = vaultstatus.report(vlt.path)
    for item in rep["sources"]:
        demo.info(f"source {item['source']}: last sequence {item['last_sequence']}, last "
                  f"ingest {item['last_ingest_at']}, gaps {item['gaps'] or 'none'}, "
                  f"forks {item['forks']}, quarantined {item['quarantined']}")
    for f in rep["findings"]:
        demo.info(f"{f['level']}: {f['message']}")
    demo.ok(f"status {rep['status']} (exit {rep['exit_code']})")
