"""Building a DSAR package: the subject's conversations, redacted for others, as files.

:func:`build` writes the package described in :mod:`vault.dsar` into a
folder; :func:`seal` puts that folder into a sealed bundle (kind ``dsar``,
signed by the vault, sealed to the given public key: the manifest is the one
record, every file a blob) and :func:`unseal` turns such a bundle back into
the folder, checking every file against the manifest; :func:`open_package`
is what ``chatvault dsar unseal`` runs online on a package sealed by hand.

Redaction, conversation by conversation, is :mod:`vault.dsarredact`.

Fields the package does not show are not exported: ``tags`` and the
platforms' ``extra`` objects (HTML bodies, entities, blocks: copies of the
text, with other people's platform ids in them).
The manifest lists every redaction: conversation, message or participant,
field, kind and replacement, never the value.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from vault import atomic, canonical, store, subjectlinks, timestamps, tombstones
from vault.errors import BadDocument, UsageError
from vault.dsarredact import Redactor
from vault.subjectlinks import Link
from vault.subjects import Subject, VaultHandle

def schema_text() -> str:
    return resources.files("vault").joinpath("schemas/dsar-package.schema.json").read_text(
        "utf-8")


def build(v: VaultHandle, case: Any, subject: Subject, folder: Path) -> dict[str, Any]:
    """Write the package for ``case`` into ``folder``; returns counts and review list."""
    from vault import dsar, dsarhtml, restriction, subjects

    atomic.private_dir(folder)
    matches = subjects.find(v.conn, subject)
    exact = [m for m in matches if m.exact]
    review = [m for m in matches if not m.exact]
    hidden = restriction.hidden(v.conn, v.key, [m.conv for m in exact])
    mine = {val for _, val in subject.exact()} | set(subject.unparsed_forms())
    links = subjectlinks.linked(v.conn, subject, [m.conv for m in exact])
    theirs = subjectlinks.own(links)  # shared or ambiguous links are someone else's too
    own = _linked_values(theirs)
    redactions: list[dict[str, Any]] = []
    agent_names = v.cfg.redact_agent_names
    regions: dict[int, str | None] = {}
    convs: list[dict[str, Any]] = []
    blobs: dict[str, str] = {}

    def stored(sha: str) -> bool:
        return v.conn.execute("SELECT 1 FROM attachments WHERE sha256 = ?",
                              (sha,)).fetchone() is not None

    for m in exact:
        text, bundle = v.conn.execute("SELECT record, bundle FROM conversations WHERE id = ?",
                                      (m.conv,)).fetchone()
        record = canonical.loads(text)
        region = tombstones.region_of_bundle(v.conn, v.home, bundle, v.region, regions)
        r = Redactor(record, mine, region, agent_names, redactions, own)
        convs.append(_conversation(r, m, record, blobs, stored))
    atomic.private_dir(folder / "attachments")
    for sha, fname in sorted(blobs.items()):
        with atomic.AtomicFile(folder / "attachments" / fname) as fh:
            for part in store.read_attachment(v.conn, sha):
                fh.write(part)
    package = {"schema": dsar.SCHEMA_ID, "generated_at": timestamps.now_utc(),
               "case": {"case_id": case.id, "received": case.received, "due": case.due,
                        "extended_due": case.extended_due},
               "subject": {"emails": subject.emails, "phones": subject.phones,
                           "linked": [_package_link(x) for x in theirs]},
               "processing": _processing(v, sorted({c["source"] for c in convs})),
               "conversations": convs}
    _write(folder / "data.json", json.dumps(package, ensure_ascii=False, indent=1))
    atomic.private_dir(folder / "schema")
    _write(folder / "schema" / "dsar-package.schema.json", schema_text())
    atomic.private_dir(folder / "conversations")
    for n, c in enumerate(convs, 1):
        c_file = folder / "conversations" / f"{n:04d}.html"
        _write(c_file, dsarhtml.conversation_page(package, c, n))
    _write(folder / "index.html", dsarhtml.index_page(package))
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    manifest = {"schema": dsar.SCHEMA_ID + "/manifest", "case_id": case.id,
                "generated_at": package["generated_at"],
                "files": [{"path": p.relative_to(folder).as_posix(),
                           "sha256": dsar.sha256_file(p), "size": p.stat().st_size}
                          for p in files],
                "redactions": redactions, "restricted_conversations": len(hidden)}
    _write(folder / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
    return {"case_id": case.id, "conversations": len(convs), "files": len(files) + 1,
            "attachments": len(blobs), "redactions": len(redactions),
            "linked": [x.as_dict() for x in links],
            "needs_review": [{"source": m.source, "conversation_id": m.conversation_id,
                              "reasons": m.reasons} for m in review]}


def _linked_values(links: list[Link]) -> frozenset[str]:
    """What the subject's linked identifiers may be found as in text (digit forms too)."""
    values = {x.value for x in links}
    phones = Subject(phones=[x.value for x in links if x.kind == "phone"])
    return frozenset(values | set(phones.unparsed_forms()))


def _package_link(link: Link) -> dict[str, Any]:
    """A linked identifier as the package tells the subject: what, and how it is linked."""
    d = link.as_dict()
    first = d["via"][0]["identifier"]
    return {"kind": d["kind"], "value": d["value"],
            "linked_by": f"held on the same participant record as {first}",
            "records": d["records"], "sources": sorted({s for _, _, s, _, _ in link.via})}


def _conversation(r: Redactor, m: Any, record: dict[str, Any], blobs: dict[str, str],
                  stored: Callable[[str], bool]) -> dict[str, Any]:
    """The package form of one conversation (redacted; mention-only: those messages)."""
    from vault import dsar

    messages = []
    for msg in record["messages"]:
        texts = [msg["text"]] + [a["text"] for a in msg.get("attachments") or ()
                                 if isinstance(a.get("text"), str)]
        if not r.subject_ids and not any(r.mentions_subject(t) for t in texts):
            continue
        mid = msg["id"]
        out = {"id": r.field(mid, "message.id", mid), "at": msg["at"],
               "from": r.sender(msg.get("from")), "text": r.field(msg["text"], "text", mid)}
        for key in ("visibility", "direction", "system"):
            if key in msg:
                out[key] = msg[key]
        files = []
        for a in msg.get("attachments") or ():
            item = {k: a[k] for k in ("type", "size", "sha256") if k in a}
            if isinstance(a.get("name"), str):
                item["name"] = r.field(a["name"], "attachment.name", mid)
            if isinstance(a.get("text"), str):
                item["text"] = r.field(a["text"], "attachment.text", mid)
            sha = a.get("sha256")
            if r.subject_ids and isinstance(sha, str) and stored(sha):
                blobs[sha] = sha + dsar.safe_extension(a.get("name"))
                item["file"] = "attachments/" + blobs[sha]
            files.append(item)
        if files:
            out["attachments"] = files
        messages.append(out)
    shown = {k: r.field(record[k], k) for k in ("platform", "channel", "title", "status")
             if isinstance(record.get(k), str)}
    shown.update({k: record[k] for k in ("started_at", "ended_at")
                  if isinstance(record.get(k), str)})
    return {"source": m.source, "conversation_id": r.field(r.cid, "conversation_id"),
            **shown, "subject_role": "customer" if m.customer else (
                "participant" if r.subject_ids else "mentioned"),
            "match_reasons": m.reasons, "participants": r.people, "messages": messages}


def _processing(v: VaultHandle, sources: list[str]) -> dict[str, Any]:
    from vault import dsar

    info: dict[str, Any] = {k: None for k in dsar.REGISTER_KEYS}
    info.update(dsar.register(v))
    info["retention_by_source"] = {s: (f"{v.cfg.retention_for(s)} days after the last "
                                       "message" if v.cfg.retention_for(s) else
                                       "no fixed period configured") for s in sources}
    return info


def _write(path: Path, text: str) -> None:
    """One file of the package: the subject's personal data, so private (0600)."""
    atomic.write_bytes(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))


# -- sealed packages -----------------------------------------------------------------------

def seal(v: VaultHandle, case_id: str, folder: Path, out: Path, pubfile: Path) -> Path:
    """The package folder as one sealed bundle ``out/<case_id>.cvb`` for ``pubfile``."""
    from vault import keys, records
    from vault.bundle import BundleWriter
    from vault.home import Home

    recipient = keys.load_public(Path(pubfile))
    manifest = (folder / "manifest.json").read_bytes()
    files = json.loads(manifest)["files"] + [
        {"path": "manifest.json", "sha256": _sha(folder / "manifest.json"),
         "size": len(manifest)}]
    record = canonical.dumps({"kind": "dsar-package", "case_id": case_id, "files": files})
    target = out / f"{case_id}.cvb"
    w = BundleWriter(target, Home(v.home).identity(), [recipient], kind="dsar",
                     source="dsar", sequence=1, context={"case_id": case_id})
    try:
        w.add_record(record, records.Summary(case_id, 0, 0, len(files), None, None))
        for f in files:
            with open(folder / f["path"], "rb") as fh:
                w.add_blob(f["sha256"], fh, f["size"])
        w.finish()
    except BaseException:
        w.abort()
        raise
    return target


def unseal(path: Path, identity: Any, trust: Any, out: Path) -> Path:
    """Open a sealed package (signed by a trusted vault) into ``out/<case_id>/``."""
    from vault.bundle import Bundle, Record

    blobs: dict[str, bytes] = {}
    index: dict[str, Any] | None = None
    with Bundle(path) as b:
        b.check_signer(trust, "vault")
        b.verify_signature()
        for item in b.items(identity):
            if isinstance(item, Record):
                index = canonical.loads(item.data)
            else:
                blobs[item.sha256] = item.content.read()
    if index is None or index.get("kind") != "dsar-package":
        raise BadDocument("not a DSAR package bundle", path=path)
    target = Path(out) / str(index["case_id"])
    for f in index["files"]:
        rel = Path(f["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BadDocument(f"unsafe path in package: {f['path']!r}", path=path)
        data = blobs.get(f["sha256"])
        if data is None:
            raise BadDocument(f"{f['path']} missing from the bundle", path=path)
        atomic.private_dir((target / rel).parent)
        atomic.write_bytes(target / rel, data)
    return target


def open_package(path: Path, identity: Any, trust: Any, out: Path) -> Path:
    """Unseal a package into ``out/<case_id>/`` whole, or leave nothing.

    It is opened into a temporary folder in ``out`` first and renamed into
    place, so a failed check (altered blob, missing file) leaves no half
    package beside the complete ones; an existing non-empty case folder is
    never written into.
    """
    import os
    import shutil

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    with atomic.output_dir(out):
        work = out / f".dsar-open{atomic.TMP_MARK}{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            opened = unseal(path, identity, trust, work)
            dest = out / opened.name
            if opened.parent != work or opened.name in ("", ".", ".."):
                raise BadDocument(f"unsafe case id in package: {opened.name!r}", path=path)
            if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
                raise UsageError(f"{dest} already exists and is not empty")
            if dest.exists():
                dest.rmdir()
            os.replace(opened, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _sha(path: Path) -> str:
    from vault import dsar

    return dsar.sha256_file(path)

