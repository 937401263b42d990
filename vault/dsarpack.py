"""Building a DSAR package: the subject's conversations, redacted for others, as files.

:func:`build` writes the package described in :mod:`vault.dsar` into a
folder; :func:`seal` puts that folder into a sealed bundle (kind ``dsar``,
signed by the vault, sealed to the given public key: the manifest is the one
record, every file a blob) and :func:`unseal` turns such a bundle back into
the folder, checking every file against the manifest.

Redaction works on the canonical record of each conversation:

* participants: the subject's own fields are kept; another customer
  becomes ``[other customer]`` (id ``other-customer-N``) with no contact
  fields; an agent keeps the name unless ``[dsar] redact_agent_names``
  (then ``Agent 1``, id ``agent-1``); contact fields of anyone but the
  subject are dropped;
* every field shown (title, channel, status, message and alt text,
  attachment names): every e-mail address and phone number that is not
  the subject's is replaced (``[e-mail redacted]``, ``[phone redacted]``),
  and so is every other customer's (and, with the switch, agent's) full
  name, participant id, platform id and customer id where written;
* conversation and message ids are never searched for what looks like an
  address or a number (a Telegram chat id is ten digits): only another
  participant's e-mail, phone (as written, E.164 or its digits), name or
  ids, written whole, are replaced there;
* the subject's own identifiers are those the case gives and those
  linked to them (:func:`vault.subjectlinks.linked`: held on the same
  participant record in a conversation found); linked ones are kept where
  written and listed in the package's ``subject.linked``, but never
  searched with nor used to tell who the subject is; a link that is also
  on another person's record, or all links when the identifiers given
  lead to different people (:func:`vault.subjectlinks.own`), are treated
  as anyone else's: redacted, not listed.

Fields the package does not show are not exported: ``tags`` and the
platforms' ``extra`` objects (HTML bodies, entities, blocks: copies of the
text, with other people's platform ids in them).
The manifest lists every redaction: conversation, message or participant,
field, kind and replacement, never the value.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from vault import atomic, canonical, redaction, store, subjectlinks, timestamps, tombstones
from vault.errors import BadDocument
from vault.subjectlinks import Link
from vault.subjects import Subject, VaultHandle

_MARK = {"email": "[e-mail redacted]", "phone": "[phone redacted]",
         "phone_unparsed": "[phone redacted]"}
#: ids: only others' known identifiers, written whole, are replaced there
_ID_FIELDS = frozenset(("conversation_id", "message.id"))
_CONTACT = ("email", "phone", "customer_id", "platform_ids", "session")
#: participant ids some exports use that are words, not identifiers: never replaced in text
_GENERIC_IDS = frozenset(("customer", "agent", "user", "visitor", "client", "guest",
                          "support", "admin", "operator", "system", "unknown", "contact"))


def schema_text() -> str:
    return resources.files("vault").joinpath("schemas/dsar-package.schema.json").read_text(
        "utf-8")


class _Redactor:
    """Redacts one conversation for the subject; records what it did, never the values.

    Others are known from the participants. Another customer's (and, with
    ``redact_agent_names``, an agent's) name, participant id, platform ids
    and customer id are replaced wherever written as whole words, in every
    field the package shows (:meth:`field`): title, channel, status,
    conversation and message ids, message text, attachment names and alt
    text. So is every e-mail address and phone number that is not the
    subject's, also when URL- or HTML-encoded (:mod:`vault.redaction`).
    """

    def __init__(self, conv: dict[str, Any], subject_values: set[str], region: str | None,
                 agent_names: bool, log: list[dict[str, Any]],
                 linked: frozenset[str] = frozenset()) -> None:
        self.cid: str = conv["conversation_id"]
        self.mine, self.region, self.agent_names, self.log = subject_values, region, \
            agent_names, log
        self.keep = subject_values | linked  # never redacted: the subject's own
        self.ids: dict[str, str] = {}  # participant id -> the id the package shows
        self._words: dict[str, tuple[str, str]] = {}  # casefolded -> (kind, replacement)
        self._contacts: dict[str, tuple[str, str]] = {}  # others' e-mails, phones: for ids
        self._counts = {"customer": 0, "agent": 0}
        self._early: list[dict[str, Any]] | None = []  # notes made before the id pattern
        self.people, self.subject_ids = self._participants(conv)
        self._pattern = _words_pattern(self._words)
        self._id_words = {**self._contacts, **self._words}
        self._id_pattern = _words_pattern(self._id_words)
        early, self._early = self._early, None
        for entry in early:
            self._note(**entry)

    def _note(self, **entry: Any) -> None:
        """One line of the manifest's redaction log, its ids as the package shows them.

        The log names where a replacement was made; written with the original
        ids it would give back what was replaced (an id holding an address).
        """
        if self._early is not None:
            self._early.append(entry)
            return
        if entry.get("message_id") is not None:
            entry["message_id"] = self._shown_id(entry["message_id"])
        self.log.append({"conversation_id": self._shown_id(self.cid), **entry})

    def _shown_id(self, text: str) -> str:
        """An id as the package shows it (others' identifiers replaced), not logged."""
        if self._id_pattern is None:
            return text
        return self._id_pattern.sub(lambda m: self._id_words[m.group(0).casefold()][1], text)

    def _hide(self, p: dict[str, Any], alias: str, shown_id: str) -> None:
        """Whatever names participant ``p`` is replaced by ``alias`` where written."""
        self.ids[p["id"]] = shown_id
        if isinstance(p.get("name"), str) and len(p["name"].strip()) >= 2:
            self._words[p["name"].strip().casefold()] = ("name", alias)
        ids = [p["id"], p.get("customer_id")]
        if isinstance(p.get("platform_ids"), dict):
            ids += [str(x) for x in p["platform_ids"].values() if isinstance(x, (str, int))]
        for value in ids:
            if (isinstance(value, str) and len(value.strip()) >= 4
                    and value.strip().casefold() not in _GENERIC_IDS):
                self._words.setdefault(value.strip().casefold(), ("identifier", alias))

    def _participants(self, conv: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
        from vault.recordidentifiers import participant_identifiers

        people, subject_ids = [], set()
        for p in conv["participants"]:
            found = participant_identifiers(p, self.region)
            q = {k: p[k] for k in ("id", "role", "name", "email", "phone", "customer_id")
                 if k in p}
            if {v for _, v in found} & self.mine:
                subject_ids.add(p["id"])
            else:
                self._contact(p, found)
                q = self._other(p, q)
            people.append(q)
        return people, subject_ids

    def _other(self, p: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
        """How the package shows someone who is not the subject."""
        if p["role"] == "customer":
            self._counts["customer"] += 1
            q = {"id": f"other-customer-{self._counts['customer']}", "role": "customer",
                 "name": "[other customer]"}
            self._hide(p, "[other customer]", q["id"])
            self._note(participant_id=q["id"], kind="other_customer",
                       replacement="[other customer]")
            return q
        if p["role"] == "agent" and self.agent_names:
            self._counts["agent"] += 1
            n = self._counts["agent"]
            q["name"], q["id"] = f"Agent {n}", f"agent-{n}"
            self._hide(p, q["name"], q["id"])
            self._note(participant_id=q["id"], kind="agent_name", replacement=q["name"])
        for key in _CONTACT:
            if q.pop(key, None) is not None:
                self._note(participant_id=q["id"], kind=key, replacement=None)
        return q

    def _contact(self, p: dict[str, Any], found: list[tuple[str, str]]) -> None:
        """Another person's e-mail and phone (as written, normalised, its digits): for ids."""
        values = [(k, v) for k, v in found if k in _MARK]
        values += [(k, p[k]) for k in ("email", "phone") if isinstance(p.get(k), str)]
        values += [("phone", d) for k, v in found if k == "phone"
                   for d in tombstones.phone_digit_forms(v)]
        for kind, value in values:
            value = value.strip()
            if len(value) >= 4 and value not in self.keep:
                self._contacts.setdefault(value.casefold(), (kind, _MARK[kind]))

    def field(self, text: str, where: str, mid: str | None = None) -> str:
        """A shown string with others' identifiers and names replaced; each one logged.

        An id (conversation, message) is never searched for what looks like
        a phone number or an address: only another person's identifiers
        known from the participants, written whole, are replaced there.
        """
        at = {"message_id": mid} if mid is not None else {}
        if where in _ID_FIELDS:
            return self._swap(text, self._id_pattern, self._id_words, where, at)
        spans = [s for s in redaction.find(text, self.region) if s.value not in self.keep]
        out = redaction.replace(text, spans, lambda s: _MARK[s.kind])
        for s in spans:
            self._note(**at, field=where, kind=s.kind, replacement=_MARK[s.kind])
        return self._swap(out, self._pattern, self._words, where, at)

    def _swap(self, text: str, pattern: re.Pattern[str] | None,
              words: dict[str, tuple[str, str]], where: str, at: dict[str, str]) -> str:
        """``text`` with each whole word of ``words`` replaced; the counts logged."""
        if pattern is None:
            return text
        counts: dict[tuple[str, str], int] = {}

        def swap(m: re.Match[str]) -> str:
            kind, alias = words[m.group(0).casefold()]
            counts[(kind, alias)] = counts.get((kind, alias), 0) + 1
            return alias

        out = pattern.sub(swap, text)
        for (kind, alias), n in counts.items():
            self._note(**at, field=where, kind=kind, replacement=alias, count=n)
        return out

    def sender(self, pid: str | None) -> str | None:
        return None if pid is None else self.ids.get(pid, pid)

    def mentions_subject(self, text: str) -> bool:
        return any(s.value in self.mine for s in redaction.find(text, self.region))


def _words_pattern(words: dict[str, tuple[str, str]]) -> re.Pattern[str] | None:
    """Any of ``words`` (casefolded) written whole, any case; longest first."""
    if not words:
        return None
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(r"(?<!\w)(?:" + alts + r")(?!\w)", re.IGNORECASE)


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
        r = _Redactor(record, mine, region, agent_names, redactions, own)
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


def _conversation(r: _Redactor, m: Any, record: dict[str, Any], blobs: dict[str, str],
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


def _sha(path: Path) -> str:
    from vault import dsar

    return dsar.sha256_file(path)

