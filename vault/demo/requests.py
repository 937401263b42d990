"""Demo stage: a restore request and a DSAR request ride the stick to the vault and back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.markup import escape

from vault import answers, ask, home, media, requestregister, requests
from vault.demo import Demo
from vault.home import Home

EMAIL = "jonas.weber@example.net"  # still held: Mara Quint was erased by the GDPR stage


def _trust(who: Home, other: Home, role: str) -> None:
    t = who.trust()
    t.trust(other.public_key.read_text(), role, str(other.public_key))
    t.save()


def _stick(demo: Demo) -> Path:
    stick = demo.state.get("stick")
    if stick is None:
        stick = demo.root / "stick"
        stick.mkdir(exist_ok=True)
    return Path(stick)


def run(demo: Demo) -> None:
    exp: Home = demo.state["exporter"]
    vlt: Home = demo.state["vault"]
    stick = _stick(demo)

    demo.step("Requests across the air gap: IT staff and the DPO ask from online")
    dpo = home.create("requester", demo.root / "dpo", "demo-dpo")
    _trust(dpo, vlt, "vault")
    _trust(vlt, exp, "requester")
    _trust(vlt, dpo, "dpo")
    demo.info("the vault trusts the exporter's key as requester (restore) and the DPO's as "
              "dpo (DSAR, erasure); both trust the vault's key for its answers")
    source = demo.state.get("export_source") or "sample"
    restore = ask.submit(exp.path, stick, "restore", {"source": source})
    demo.ok(f"{restore['file']}: restore source {source!r}, valid until "
            f"{restore['expires_at']}")
    dsar = ask.submit(dpo.path, stick, "dsar", {"emails": [EMAIL], "phones": [],
                                                "received": _today()})
    demo.ok(f"{dsar['file']}: access request received today")
    on_stick = (stick / media.ROOT / media.REQUESTS / dsar["file"]).read_bytes()
    demo.info(f"signed, and the parameters are sealed to the vault: the e-mail address is "
              f"on the stick in clear: {EMAIL.encode() in on_stick}")

    demo.step("At the vault: the daemon's request step answers them on the same insertion")
    for got in requests.answer_media(vlt.path, stick):
        demo.ok(escape(f"{got.action} {got.request_id[:16]}: {got.status}: {got.message}"))
    shown = sorted(p.name for p in (stick / media.ROOT / media.ANSWERS).iterdir())
    demo.info("answers/: " + ", ".join(shown))
    replay = demo.root / "replay-stick"
    copy = replay / media.ROOT / media.REQUESTS / dsar["file"]
    copy.parent.mkdir(parents=True)
    shutil.copy(stick / media.ROOT / media.REQUESTS / dsar["file"], copy)
    [again] = requests.answer_media(vlt.path, replay)
    demo.refused(f"the same DSAR request on another stick: {again.status} ({again.reason}), "
                 "nothing done")

    demo.step("Back online: answers verified against the vault's key and opened")
    out = demo.root / "answers"
    for who, name in ((exp, "IT staff"), (dpo, "DPO")):
        rep = answers.collect(who.path, stick, out)
        for item in rep.items:
            if item.result == "not_ours":
                continue
            demo.ok(f"{name}: {item.action} {item.status}, {item.result} into "
                    f"{Path(item.out).relative_to(demo.root) if item.out else '-'}")
            if item.out and item.action == "restore":
                lines = (Path(item.out) / f"{source}.jsonl").read_text().splitlines()
                demo.info(f"{len(lines)} conversations restored as canonical JSONL")
            if item.out and item.action == "dsar":
                data = json.loads((Path(item.out) / "data.json").read_text())
                ids = [c["conversation_id"] for c in data["conversations"]]
                demo.info(f"case {data['case']['case_id']}: conversations {', '.join(ids)}; "
                          "HTML transcripts, manifest with SHA-256 of every file")
    left = (requestregister.status(dpo.path)["requests"]
            + requestregister.status(exp.path)["requests"])
    demo.ok(f"requests still waiting: {len(left)}; answered requests and collected answers "
            "removed from the stick")


def _today() -> str:
    from vault import dsar

    return dsar.today().isoformat()
