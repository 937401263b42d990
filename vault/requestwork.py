"""What each request does on the vault: exactly what the matching vault command does.

:mod:`vault.requestrun` finds, verifies and answers request files; this
module holds the work itself. :meth:`Work.prepare` checks, before anything
is changed, what would make the answer a plain no (a selection that cannot
be used, a DSAR subject the vault holds nothing about, a legal hold over
an erasure); :meth:`Work.run` then does it:

* ``restore``: ``restore create`` with the request's selection, sealed to
  its ``answer_to`` key, written into ``answers/`` (parts read back);
* ``dsar``: ``dsar open`` (case note: the request id) and ``dsar export
  --seal-to`` the ``answer_to`` key, built in the vault's staging folder so
  that no plaintext ever touches the stick, then placed and read back;
* ``erase``: ``erase`` with the request's reason, recorded as requested by
  ``request:<requester fingerprint>``. With ``[erasure] four_eyes`` on it
  takes effect at once only when a second trusted DPO key signed the
  request (the approver is ``dpo:<fingerprint>``); otherwise it stays
  pending until an operator runs ``chatvault erase approve ID`` (any
  operator: the requester was not one of them), and the request, still on
  the stick, is answered finally at the next insertion. A second signature
  counts only before the request expires; after that the pending erasure
  waits for the operator's approval alone.

A run interrupted after its work was recorded resumes from what the row
names (the DSAR case, the erasure) instead of doing it twice.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vault import atomic, canonical, requests
from vault.errors import LegalHoldBlocks, UsageError
from vault.keys import Identity
from vault.subjects import Subject, VaultHandle


class Refusal(Exception):
    """A final no, with its reason code, found before any work was done."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Outcome:
    status: str
    reason: str | None
    message: str
    counts: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


class Work:
    """The vault's side of accepted requests on one medium."""

    def __init__(self, v: VaultHandle, identity: Identity, answers: Path,
                 note: Callable[..., None]) -> None:
        self.v, self.identity, self.answers = v, identity, answers
        self._note = note  # note(request_id, case_id=... | erasure_id=...) on the row

    def run(self, req: requests.Request, params: dict[str, Any],
            row: dict[str, Any] | None) -> Outcome:
        action = {"restore": self._restore, "dsar": self._dsar, "erase": self._erase}
        return action[req.action](req, params, row)

    def prepare(self, req: requests.Request, params: dict[str, Any]) -> None:
        """What must hold before any work: refusals here leave the store untouched."""
        from vault import dsar, erasure, subjects

        if req.action == "restore":
            _selection(params).check()
            try:
                self.v.require_source(params.get("source"), "there is nothing to restore")
            except UsageError as exc:
                raise Refusal("unknown_source", exc.detail) from None
            return
        subject = self._subject(params)
        if req.action == "dsar":
            if dsar.parse_date(params["received"], "received") > dsar.today():
                raise Refusal("malformed", "the received date is in the future")
            if not any(m.exact for m in subjects.find(self.v.conn, subject)):
                raise Refusal("subject_not_found", "the vault holds no conversation with "
                              "these identifiers; no case was opened")
            return
        erasure.check_reason(_reason(req, params))  # the audit log keeps it for good
        plan = erasure.plan(self.v, subject)
        try:
            erasure.refuse_if_held(self.v, plan, _reason(req, params), None, listed=True,
                                   requested_by=f"request:{req.requester}")
        except LegalHoldBlocks as exc:
            raise Refusal("legal_hold", exc.detail) from None

    def _subject(self, params: dict[str, Any]) -> Subject:
        return Subject.parse(emails=params.get("emails", []), phones=params.get("phones", []),
                             ids=params.get("ids", []), region=self.v.region)

    # -- the three actions -----------------------------------------------------------

    def _restore(self, req: requests.Request, params: dict[str, Any],
                 row: dict[str, Any] | None) -> Outcome:
        from vault import restore

        made = restore.create(self.v.home, self.identity, [req.answer_to], _selection(params),
                              self.answers, purpose=f"request {req.id}", on_media=True)
        counts = {"conversations": made.conversations, "parts": len(made.parts),
                  "attachments": made.blobs, "redacted": made.redacted,
                  **{f"left_out_{why}": n for why, n in made.excluded.items()}}
        files = [{"file": p["file"], "sha256": p["sha256"], "size": p["size"]}
                 for p in made.parts]
        what = (f"{made.conversations} conversation(s) in {len(files)} part(s)"
                if files else "no conversation matched")
        return Outcome("done", None, f"restore set {made.restore_id[:16]}: {what}", counts,
                       files, {"restore_id": made.restore_id})

    def _dsar(self, req: requests.Request, params: dict[str, Any],
              row: dict[str, Any] | None) -> Outcome:
        from vault import dsar, restore

        case_id = row.get("case_id") if row else None
        if case_id is None:
            received = dsar.parse_date(params["received"], "received")
            case_id = dsar.open_case(self.v, received, self._subject(params),
                                     note=_note(req, params)).id
            self._note(req.id, case_id=case_id)
        scratch = self.v.home / "staging" / f".request-{req.id[:16]}{atomic.TMP_MARK}x"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True, mode=0o700)
        try:
            pub = scratch / "answer-to.pub"
            pub.write_text(req.body["answer_to"], encoding="utf-8")
            (scratch / "out").mkdir()
            result = dsar.export(self.v, case_id, scratch / "out", seal_to=pub)
            named = scratch / f"dsar-{req.id[:16]}.{_short(self.identity.fingerprint)}.cvb"
            os.replace(result["sealed"], named)
            sha = requests.sha256_file(named)
            placed = restore.place(named, self.answers, sha)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        counts = {k: result[k] for k in ("conversations", "files", "attachments", "redactions")}
        counts["needs_review"] = len(result["needs_review"])
        return Outcome("done", None, f"DSAR case {case_id}: {counts['conversations']} "
                       "conversation(s) in a sealed package", counts,
                       [{"file": placed.name, "sha256": sha, "size": placed.stat().st_size}],
                       {"case_id": case_id})

    def _erase(self, req: requests.Request, params: dict[str, Any],
               row: dict[str, Any] | None) -> Outcome:
        from vault import erasure

        eid = row.get("erasure_id") if row else None
        if eid is None:
            subject = self._subject(params)
            eid = erasure.request(self.v, subject, _reason(req, params),
                                  requested_by=f"request:{req.requester}")
            self._note(req.id, erasure_id=eid)
        found = self.v.conn.execute("SELECT status, note, counts, approved_by FROM erasures "
                                    "WHERE id = ?", (eid,)).fetchone()
        if found is None:
            return Outcome("failed", "lost", f"erasure {eid} is no longer on record")
        status, note, counts, approver = found
        ids = {"erasure_id": eid}
        if status == "done":
            how = (f"approved at the vault by {approver}" if approver and
                   not approver.startswith("dpo:") else None)
            return _erased(eid, canonical.loads(counts) if counts else {}, how)
        if (note or "").startswith("refused"):
            return Outcome("refused", "legal_hold", f"erasure {eid} {note}", ids=ids)
        second = [s.fingerprint for s in req.signers if s.fingerprint != req.requester]
        if erasure.four_eyes(self.v):
            if not second:
                return Outcome("pending", "approval_needed", (
                    f"erasure {eid} needs a second pair of eyes: 'chatvault erase approve "
                    f"{eid}' at the vault, or a second DPO signature ('chatvault request "
                    "approve'); leave the request on the stick: the next insertion brings "
                    "the final answer"), ids=ids)
            if req.expired():
                # signatures count only while the request is valid: the erasure was
                # accepted before, so it waits for the vault's own approval
                return Outcome("pending", "expired", (
                    f"the request expired at {req.body['expires_at']}, so its second "
                    f"signature no longer counts; erasure {eid} waits for 'chatvault erase "
                    f"approve {eid}' at the vault"), ids=ids)
            done = erasure.approve(self.v, eid, approver=f"dpo:{second[0]}")
            return _erased(eid, done, f"approved by the second DPO signature {second[0]}")
        subject, info = erasure.pending_subject(self.v, eid)
        return _erased(eid, erasure.execute(self.v, eid, subject, info["reason"]), None)


def _selection(params: dict[str, Any]) -> Any:
    from vault import restore

    return restore.Selection(source=params.get("source"), since=params.get("since"),
                             until=params.get("until"),
                             conversations=tuple(params.get("conversations") or ()))


def _erased(eid: str, counts: dict[str, Any], how: str | None) -> Outcome:
    kept = {k: v for k, v in counts.items() if isinstance(v, int)}
    held = "nothing held; " if not (kept.get("conversations_removed")
                                    or kept.get("conversations_redacted")) else ""
    return Outcome("done", None, (
        f"erasure {eid} done{f' ({how})' if how else ''}: {held}"
        f"{kept.get('conversations_removed', 0)} conversation(s) removed, "
        f"{kept.get('conversations_redacted', 0)} redacted; tombstones keep it erased"),
        kept, ids={"erasure_id": eid})


def _short(fingerprint: str) -> str:
    return fingerprint.replace("-", "")[:9]


def _note(req: requests.Request, params: dict[str, Any]) -> str:
    given = params.get("note")
    return f"request {req.id}" + (f": {given}" if given else "")


def _reason(req: requests.Request, params: dict[str, Any]) -> str:
    """The requester's reason, traceable to the request (it goes into the audit log)."""
    return f"{params['reason']} (request {req.id})"
