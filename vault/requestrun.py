"""The vault answers the requests a medium carries (the daemon and ``vault ingest`` call this).

For each ``*.request.json`` in ``<media>/chatvault/requests/`` (plain names,
no symlinks, at most 1 MiB, at most :data:`MAX_PER_MEDIUM` per insertion):

1. **verify** (:func:`vault.requests.verify`): structure, every signature,
   each signer trusted for the action's role (``requester``: restore;
   ``dpo``: dsar, erase), signed by the requester it names. A failure is
   answered with a *notice* (``<file>.<vault>.<reason>.answer.json``) and
   audited, not recorded as a request: anyone can write any id into a file
   (a copy of a real request with its signature broken carries the real id
   and digest), so the notice names the file and its SHA-256, never the id
   as its request (``verified: false``), and the id enters no replay memory;
2. **replay**: a request id found in the ``requests`` table is never run
   again. One still ``working`` (interrupted) resumes; one ``pending``
   approval is looked at again (approved at the vault since? signed by a
   second DPO now?); any other is refused with a ``replay`` notice that
   carries the first answer;
3. **expiry**, a creation time too far ahead of the vault's clock
   (:data:`vault.requests.CLOCK_SKEW`), the **parameters** (sealed to this
   vault?) and what the action
   needs first (the DSAR subject found; no legal hold over the erasure):
   refusals here are final answers, recorded;
4. **claimed** (a ``working`` row, committed), then **run** by
   :mod:`vault.requestwork` exactly as the matching vault command runs
   (an erasure under four eyes may stay *pending*);
5. the signed **answer** is stored with the row, audited and written to
   ``answers/<action>-<id>.<vault>.answer.json``.

The vault never deletes request files. A pending erasure request comes back
on the next insertion and then carries its final answer home; a second vault
(a disaster-recovery site) may have to answer the same request. ``request
collect`` tidies the stick online once every vault addressed has answered.

A media error stops the run (raised, the daemon reports the stick); a
request it interrupted stays ``working`` and resumes at the next insertion.
Logs name files, request ids, actions, statuses and reasons; never the
parameters.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault import (atomic, audit, canonical, filelock, media, requestparams, requests, signed,
                   statehook, store, timestamps)
from vault.errors import (EXIT_OK, EXIT_OTHER, EXIT_POLICY, EXIT_REJECTED, BadDocument,
                          ChatvaultError, CorruptPayload, LegalHoldBlocks, MediaError,
                          NotARecipient, RevokedSigner, UntrustedSigner, UsageError, WrongRole)
from vault.home import Home
from vault.keys import Identity
from vault.requestwork import Outcome, Refusal, Work
from vault.subjects import VaultHandle, open_vault

log = logging.getLogger(__name__)

MAX_PER_MEDIUM = 100
FINAL = ("done", "refused", "failed")


@dataclass
class Answered:
    """What became of one request file (for logs, ``vault ingest`` and tests)."""

    file: str
    request_id: str | None
    action: str | None
    status: str
    reason: str | None
    message: str
    answer_file: str | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "failed":
            return EXIT_OTHER
        if self.status != "refused" or self.reason == "subject_not_found":
            return EXIT_OK
        return EXIT_REJECTED if self.reason in ("malformed", "forged") else EXIT_POLICY

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "exit_code": self.exit_code}


def answer_media(home: Path, media_root: Path) -> list[Answered]:
    """Verify, run and answer every request on the media; see the module docstring."""
    folder = media.folder(media_root, media.REQUESTS)
    found = media.safe_files(folder, requests.SUFFIX, signed.MAX_DOCUMENT)
    too_big = media.oversized_files(folder, requests.SUFFIX, signed.MAX_DOCUMENT)
    if not found and not too_big:
        return []
    if len(found) > MAX_PER_MEDIUM:
        log.warning("%d request files on the media; answering the first %d, the rest at "
                    "the next insertion", len(found), MAX_PER_MEDIUM)
        found = found[:MAX_PER_MEDIUM]
    h = Home(Path(home)).require()
    answers = media.folder(media_root, media.ANSWERS, create=True)
    atomic.remove_stale_temporaries(answers)
    out: list[Answered] = []
    # one run at a time per vault: the daemon and a person at the command line
    with filelock.exclusive(h.path / "requests.lock"), open_vault(h.path) as v:
        run = _Run(v, h.identity(), h.trust(), answers)
        try:
            for path in too_big:
                out.append(run.notice(path, None, "malformed",
                                      f"larger than {signed.MAX_DOCUMENT} bytes"))
            for path in found:
                out.append(run.one(path))
        finally:
            if run.changed:
                statehook.changed(h.path, "requests")
            media.hand_over(media_root, answers, tree=True)
    return out


def _unverified(exc: ChatvaultError) -> str:
    if isinstance(exc, RevokedSigner):
        return "revoked"
    if isinstance(exc, WrongRole):
        return "wrong_role"
    if isinstance(exc, UntrustedSigner):
        return "untrusted"
    return "forged" if isinstance(exc, BadDocument) else "malformed"


class _Run:
    def __init__(self, v: VaultHandle, identity: Identity, trust: Any, answers: Path) -> None:
        self.v, self.identity, self.trust, self.answers = v, identity, trust, answers
        self.changed = False
        self.work = Work(v, identity, answers, self._note)

    # -- one request file ------------------------------------------------------------

    def one(self, path: Path) -> Answered:
        body: dict[str, Any] | None = None
        try:
            doc = signed.load(path)
            body = doc["body"]
            requests.check_header(doc["body"], path.name)
        except ChatvaultError as exc:
            return self.notice(path, body, "malformed", exc.detail)
        try:
            req = requests.verify(doc, self.trust, str(path))
        except ChatvaultError as exc:
            return self.notice(path, body, _unverified(exc), exc.detail)
        row = self._row(req.id)
        if row is not None:
            if row["digest"] != req.digest or row["status"] in FINAL:
                return self.replay(req, row)
            return self.run(req, row)
        if req.expired():
            return self.finish(req, Outcome("refused", "expired", "the request expired at "
                                            f"{req.body['expires_at']}; make a new one"), None)
        if req.from_the_future():
            ahead = int(requests.CLOCK_SKEW.total_seconds() // 60)
            return self.finish(req, Outcome("refused", "clock_skew", (
                f"the request was made at {req.body['created_at']}, more than {ahead} "
                f"minutes ahead of the vault's clock ({timestamps.now_utc()}): check both "
                "clocks, then make a new one")), None)
        return self.run(req, None)

    def run(self, req: requests.Request, row: dict[str, Any] | None) -> Answered:
        try:
            params = requestparams.open_params(req, self.identity)
            if row is None or not any(row[k] for k in ("case_id", "erasure_id", "restore_id")):
                self.work.prepare(req, params)  # again after an interruption before any work
        except NotARecipient:
            return self.finish(req, Outcome("refused", "not_addressed", "the parameters are "
                                            "not sealed to this vault's key"), row)
        except (CorruptPayload, BadDocument, UsageError) as exc:
            return self.finish(req, Outcome("refused", "malformed", exc.detail), row)
        except Refusal as r:
            return self.finish(req, Outcome("refused", r.reason, r.message), row)
        if row is None:
            row = self._claim(req)
        try:
            outcome = self.work.run(req, params, row)
        except MediaError:
            raise  # the row stays 'working': the next insertion resumes it
        except LegalHoldBlocks as exc:
            outcome = Outcome("refused", "legal_hold", exc.detail)
        except ChatvaultError as exc:
            outcome = Outcome("failed", exc.code, exc.detail)
        except Exception:  # noqa: BLE001 - one request must not stop the others
            log.exception("request %s (%s): internal error", req.id[:16], req.action)
            outcome = Outcome("failed", "internal", "internal error; see the vault's log")
        return self.finish(req, outcome, row)

    def _row(self, request_id: str) -> dict[str, Any] | None:
        cur = self.v.conn.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        found = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], found)) if found else None

    def _claim(self, req: requests.Request) -> dict[str, Any]:
        conn = self.v.conn
        with store.transaction(conn):
            conn.execute("INSERT INTO requests (request_id, action, requester, digest, status, "
                         "received_at, expires_at) VALUES (?, ?, ?, ?, 'working', ?, ?)",
                         (req.id, req.action, req.requester, req.digest,
                          timestamps.now_utc(), req.body["expires_at"]))
            audit.append(conn, "request.accept", target=f"request:{req.id}", detail={
                "action": req.action, "requester": req.requester, "file": req.path.name,
                "signers": [s.fingerprint for s in req.signers]})
        self.changed = True
        row = self._row(req.id)
        assert row is not None
        return row

    def _note(self, request_id: str, **ids: str) -> None:
        for column, value in ids.items():
            assert column in ("case_id", "erasure_id", "restore_id")
            with store.transaction(self.v.conn):
                self.v.conn.execute(f"UPDATE requests SET {column} = ? WHERE request_id = ?",
                                    (value, request_id))

    def finish(self, req: requests.Request, out: Outcome,
               row: dict[str, Any] | None) -> Answered:
        """Record (a row for a refusal found before any work), audit, sign, write."""
        conn = self.v.conn
        with store.transaction(conn):
            if row is None:
                conn.execute("INSERT INTO requests (request_id, action, requester, digest, "
                             "status, received_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (req.id, req.action, req.requester, req.digest, out.status,
                              timestamps.now_utc(), req.body["expires_at"]))
            action = "request.refused" if out.status == "refused" else "request.answer"
            audit.append(conn, action, target=f"request:{req.id}", detail={
                "action": req.action, "status": out.status, "reason": out.reason,
                "requester": req.requester, "counts": out.counts, **out.ids})
            doc = make_answer(
                self.identity, verified=True, status=out.status, reason=out.reason,
                message=out.message, request_id=req.id, request_digest=req.digest,
                request_file=req.path.name, action=req.action, counts=out.counts,
                files=out.files, **audit.position(conn).fields(), **out.ids)
            conn.execute("UPDATE requests SET status = ?, reason = ?, answered_at = ?, "
                         "answer = ? WHERE request_id = ?",
                         (out.status, out.reason, doc["body"]["at"],
                          canonical.dumps(doc).decode("utf-8"), req.id))
        self.changed = True
        name = answer_name(req.stem, self.identity.fingerprint)
        write_answer(self.answers, doc, name)
        level = logging.INFO if out.status in ("done", "pending") else logging.WARNING
        log.log(level, "request %s (%s) from %s: %s%s", req.id[:16], req.action,
                req.requester, out.status, f" ({out.reason})" if out.reason else "")
        return Answered(req.path.name, req.id, req.action, out.status, out.reason,
                        out.message, name)

    def replay(self, req: requests.Request, row: dict[str, Any]) -> Answered:
        """Refuse a verified request seen before; the notice carries the first answer."""
        same = row["digest"] == req.digest
        first = canonical.loads(row["answer"])["body"] if same and row["answer"] else None
        message = (f"request {req.id[:16]} was handled at {row['received_at']} "
                   f"({row['status']}); nothing done" if same else
                   f"another request with id {req.id[:16]} was handled before; nothing done")
        conn = self.v.conn
        with store.transaction(conn):
            audit.append(conn, "request.refused", target=f"request:{req.id}", detail={
                "reason": "replay", "action": req.action, "file": req.path.name,
                "requester": req.requester})
            doc = make_answer(
                self.identity, verified=True, status="refused", reason="replay",
                message=message, request_id=req.id, request_digest=req.digest,
                request_file=req.path.name, action=req.action, **audit.position(conn).fields(),
                first_answer=first)
        name = self._write_notice(req.path, "replay", doc)
        log.warning("request file %s refused: replay (%s)", req.path.name, message)
        return Answered(req.path.name, req.id, req.action, "refused", "replay", message, name)

    def notice(self, path: Path, body: dict[str, Any] | None, reason: str,
               message: str) -> Answered:
        """Answer a file that could not be verified: nothing in it is trusted.

        The answer names the file and its SHA-256, not the request it claims
        to be (``claimed_request_id``), so that it can never settle that
        request online; nothing is recorded but the audit entry.
        """
        body = body if isinstance(body, dict) else {}
        message = message[:300]
        claimed = body.get("request_id") if requests.valid_id(body.get("request_id")) else None
        act = body.get("action") if body.get("action") in requests.ACTIONS else None
        sha = _small_sha256(path)
        conn = self.v.conn
        with store.transaction(conn):
            audit.append(conn, "request.refused", target=None, detail={
                "reason": reason, "file": path.name, "sha256": sha, "verified": False,
                "claimed_request_id": claimed, "claimed_action": act})
            doc = make_answer(
                self.identity, verified=False, status="refused", reason=reason,
                message=message, request_id=None, request_digest=None,
                request_file=path.name, action=None, request_sha256=sha,
                claimed_request_id=claimed, claimed_action=act, **audit.position(conn).fields())
        name = self._write_notice(path, reason, doc)
        log.warning("request file %s refused: %s (%s)", path.name, reason, message)
        return Answered(path.name, None, None, "refused", reason, message, name)

    def _write_notice(self, path: Path, reason: str, doc: dict[str, Any]) -> str:
        """``<file stem>.<vault>.<reason>.answer.json``: never a real answer's name."""
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.name[:-len(requests.SUFFIX)]).lstrip(".")
        name = answer_name(stem or "unnamed", self.identity.fingerprint, reason)
        write_answer(self.answers, doc, name)
        return name


# -- answers as the vault writes them ------------------------------------------------

def make_answer(identity: Identity, *, verified: bool, status: str, reason: str | None,
                message: str, request_id: str | None, request_digest: str | None,
                request_file: str, action: str | None, **extra: Any) -> dict[str, Any]:
    """A signed answer (:mod:`vault.requests`); ``verified`` False: a file that did not verify."""
    if status not in requests.STATUSES:
        raise ValueError(f"unknown answer status {status!r}")
    if not verified and (request_id or request_digest or action or status != "refused"):
        raise ValueError("an unverified file's answer names no request and only refuses")
    body = {"kind": requests.ANSWER_KIND, "format": requests.FORMAT,
            "request_id": request_id, "request_digest": request_digest,
            "request_file": request_file,
            "action": action, "verified": verified, "status": status, "reason": reason,
            "message": message, "counts": {}, "files": [], "vault": identity.fingerprint,
            "at": timestamps.now_utc()}
    body.update({k: v for k, v in extra.items() if v is not None})
    return signed.sign(body, identity)


def answer_name(stem: str, vault_fp: str, notice: str | None = None) -> str:
    """``<stem>.<vault>.answer.json``; notices (refusals of unverified documents,
    replays) add their reason, so they never replace a real answer."""
    tag = f".{notice}" if notice else ""
    return f"{stem[:100]}.{vault_fp.replace('-', '')[:9]}{tag}{requests.ANSWER_SUFFIX}"


def write_answer(folder: Path, doc: dict[str, Any], name: str) -> Path:
    data = signed.dumps(doc)
    media.ensure_space(folder, len(data))
    atomic.write_bytes(folder / name, data)
    return folder / name


def _small_sha256(path: Path) -> str | None:
    """The file's SHA-256, unless it is too large to be a request (not worth reading)."""
    try:
        if os.lstat(path).st_size > signed.MAX_DOCUMENT:
            return None
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    return requests.sha256_file(path)


# -- vault status ---------------------------------------------------------------------

def check_requests(ctx: Any) -> list[Any]:
    """WARNING for a request from media waiting for an operator, or interrupted."""
    from vault.vaultstatus import WARNING, Finding

    out = []
    for rid, action, status, eid, state in ctx.conn.execute(
            "SELECT r.request_id, r.action, r.status, r.erasure_id, e.status FROM requests r "
            "LEFT JOIN erasures e ON e.id = r.erasure_id "
            "WHERE r.status IN ('pending', 'working') ORDER BY r.received_at"):
        data = {"request_id": rid, "action": action, "status": status, "erasure_id": eid}
        if status == "pending" and state == "pending":
            out.append(Finding(WARNING, "requests", f"erasure request {rid[:16]} from media "
                               f"waits for a second pair of eyes: 'chatvault erase approve "
                               f"{eid}' (its answer goes out with the request's stick)", data))
        elif status == "working":
            out.append(Finding(WARNING, "requests", f"{action} request {rid[:16]} was "
                               "interrupted; it resumes when its stick is inserted again",
                               data))
    return out


STATUS_CHECKS = [check_requests]
