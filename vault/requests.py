"""Requests across the air gap: what online staff ask the vault, and what it answers.

A **request** is a signed document (:mod:`vault.signed`, kind ``request``)
written online into ``<media>/chatvault/requests/<action>-<id>.request.json``;
the vault (:mod:`vault.requestrun`, run by the daemon and ``vault ingest``)
verifies it, does the work and writes an **answer** (kind ``answer``) into
``<media>/chatvault/answers/``; online, :mod:`vault.answers` collects it.

Request body::

    kind        "request"
    format      1
    request_id  32 lowercase hex digits, random
    action      "restore" (signer trusted as requester), "dsar" or "erase" (dpo)
    created_at, expires_at   canonical UTC; at most 90 days apart
    requester   fingerprint of the home that made it; must be one of the signers
    answer_to   a public key file's text: restore bundles and DSAR packages are
                sealed to it (the requester's own key unless told otherwise)
    params      the parameters, sealed (below)

An erasure request may carry a second signature (``request approve``): with
``[erasure] four_eyes`` on the vault, two distinct trusted ``dpo`` keys make
it take effect; one signature leaves it pending an operator's approval.

**Parameters name people**, and a stick can be lost, so they travel sealed:
a fresh 32-byte key encrypts their canonical JSON as one secretstream message
tagged FINAL, with additional data ``"chatvault/request/v1/params\\0" ||
request_id || "\\0" || action``; the key is sealed (``crypto_box_seal``) to
every vault the requester trusts, to the requester and to the DPO keys it
trusts (a second DPO must read what they approve)::

    params = {"header": b64, "ciphertext": b64,
              "recipients": [{"fingerprint", "box": b64 X25519 key, "key": b64}]}

In clear: ``restore`` {source?, since?, until?, conversations?}, ``dsar``
{emails, phones, ids?, received (YYYY-MM-DD), note?}, ``erase`` {emails, phones, ids?,
reason}. Both sides check them with :func:`vault.requestparams.check_params`.

Answer body (signed by :func:`vault.requestrun.make_answer`): ``request_id``,
``request_digest`` (SHA-256 of the request body's canonical JSON, which a
second signature does not change), ``request_file``, ``action``,
``verified``, ``status`` (done, pending, refused, failed), ``reason`` (a
code: untrusted, revoked, wrong_role, forged, malformed, expired,
clock_skew, replay, not_addressed, legal_hold, subject_not_found,
unknown_source, approval_needed, or the error code of a failure),
``message``, ``counts``, ``files`` (name, sha256, size in ``answers/``),
``case_id`` / ``erasure_id`` / ``restore_id``, ``vault``, ``at``, the audit
position (``audit_chain``, ``audit_entries``, ``audit_head``:
:func:`vault.audit.position`), and for a replay the first answer's body as
``first_answer``.

A file that did not verify names no request (a copy of a real one with its
signature broken carries the real id and digest): ``verified`` false,
``request_id`` / ``request_digest`` / ``action`` null, the file named by
``request_file`` and ``request_sha256``, and what it claimed to be in
``claimed_request_id`` / ``claimed_action``: shown, never settling anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from vault import atomic, canonical, keys, media, signed, timestamps
from vault.errors import BadDocument, MediaIOError, UsageError
from vault.requestparams import check_params, seal_params

KIND, ANSWER_KIND, FORMAT = "request", "answer", 1
ACTIONS = ("restore", "dsar", "erase")
ROLE_FOR = {"restore": "requester", "dsar": "dpo", "erase": "dpo"}
STATUSES = ("done", "pending", "refused", "failed")
SUFFIX, ANSWER_SUFFIX = ".request.json", ".answer.json"
DEFAULT_DAYS, MAX_DAYS = 14, 90
#: created_at further ahead of the vault's clock is refused (clock_skew): it would
#: outlive MAX_DAYS. (Bundles are only warned about, at ``clock_ahead_hours``.)
CLOCK_SKEW = timedelta(hours=1)
#: reasons for refusing files before they were verified (also ``malformed``
#: params of a verified request: answers without ``verified`` cannot tell)
UNVERIFIED = ("malformed", "forged", "untrusted", "revoked", "wrong_role")

_ID = re.compile(r"^[0-9a-f]{32}$")


# -- requests -----------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A request whose signatures, signers' trust and role have been checked."""

    path: Path
    doc: dict[str, Any]
    signers: list[Any]  # trust entries, the requester among them
    answer_to: keys.PublicIdentity

    @property
    def body(self) -> dict[str, Any]:
        return self.doc["body"]

    @property
    def id(self) -> str:
        return str(self.body["request_id"])

    @property
    def action(self) -> str:
        return str(self.body["action"])

    @property
    def requester(self) -> str:
        return str(self.body["requester"])

    @property
    def digest(self) -> str:
        return digest(self.body)

    @property
    def stem(self) -> str:
        return f"{self.action}-{self.id}"

    def expired(self, now: datetime | None = None) -> bool:
        moment = now or datetime.now(timestamps.UTC)
        return timestamps.parse(self.body["expires_at"]) <= moment

    def from_the_future(self, now: datetime | None = None) -> bool:
        """Made further ahead of ``now`` than :data:`CLOCK_SKEW` allows."""
        moment = now or datetime.now(timestamps.UTC)
        return timestamps.parse(self.body["created_at"]) > moment + CLOCK_SKEW


def digest(body: dict[str, Any]) -> str:
    return canonical.digest(body)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def make(identity: keys.Identity, action: str, params: dict[str, Any], *,
         recipients: Sequence[keys.PublicIdentity], answer_to: str | None = None,
         days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """A signed request whose parameters ``recipients`` (the vaults!) can open.

    ``answer_to`` is a public key file's text; by default the requester's own.
    """
    if action not in ACTIONS:
        raise UsageError(f"unknown request action {action!r}")
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--expires-in must be between 1 and {MAX_DAYS} days")
    check_params(action, params)
    answer_text = answer_to or keys.public_key_text(identity)
    answer_key = keys.parse_public(answer_text, "--answer-to")
    now = datetime.now(timestamps.UTC).replace(microsecond=0)
    request_id = secrets.token_hex(16)
    body = {"kind": KIND, "format": FORMAT, "request_id": request_id, "action": action,
            "created_at": timestamps.format_utc(now),
            "expires_at": timestamps.format_utc(now + timedelta(days=days)),
            "requester": identity.fingerprint, "answer_to": answer_text,
            "params": seal_params(params, request_id, action,
                                  [*recipients, identity.public(), answer_key])}
    return signed.sign(body, identity)


def file_name(body: dict[str, Any]) -> str:
    return f"{body['action']}-{body['request_id']}{SUFFIX}"


def check_header(body: dict[str, Any], name: str) -> None:
    """The fields the vault needs before it can check signatures and trust."""
    if body.get("kind") != KIND:
        raise BadDocument(f"is a {str(body.get('kind'))[:20]!r} document, not a request",
                          path=name)
    if body.get("format") != FORMAT:
        raise BadDocument("request format is not 1 (written by a newer chatvault?)", path=name)
    if not isinstance(body.get("request_id"), str) or not _ID.match(body["request_id"]):
        raise BadDocument("request_id is not 32 hex digits", path=name)
    if body.get("action") not in ACTIONS:
        raise BadDocument(f"action is not one of {', '.join(ACTIONS)}", path=name)
    for key in ("requester", "answer_to"):
        if not isinstance(body.get(key), str) or len(body[key]) > 4096:
            raise BadDocument(f"{key} missing", path=name)
    if not isinstance(body.get("params"), dict):
        raise BadDocument("params missing", path=name)
    try:
        created = timestamps.parse(body["created_at"])
        expires = timestamps.parse(body["expires_at"])
    except (KeyError, ValueError):
        raise BadDocument("created_at / expires_at are not times", path=name) from None
    if not timedelta(0) < expires - created <= timedelta(days=MAX_DAYS):
        raise BadDocument(f"valid for more than {MAX_DAYS} days, or not at all", path=name)


def verify(doc: dict[str, Any], trust: Any, name: str) -> Request:
    """Header, every signature, each signer's trust for the action's role.

    Raises BadDocument (malformed, forged), UntrustedSigner, RevokedSigner or
    WrongRole; nothing in the body may be used before this returns.
    """
    body = doc["body"]
    check_header(body, name)
    signers = signed.verify(doc, trust, ROLE_FOR[body["action"]], KIND, name)
    if body["requester"] not in {s.fingerprint for s in signers}:
        raise BadDocument("not signed by the requester it names", path=name)
    answer_to = keys.parse_public(body["answer_to"], f"{name} [answer_to]")
    return Request(Path(name), doc, signers, answer_to)


def write(media_root: Path, doc: dict[str, Any]) -> Path:
    """Write a request onto the media atomically and read it back."""
    folder = media.folder(media_root, media.REQUESTS, create=True)
    return rewrite(folder / file_name(doc["body"]), doc)


def rewrite(path: Path, doc: dict[str, Any]) -> Path:
    data = signed.dumps(doc)
    if len(data) > signed.MAX_DOCUMENT:
        raise UsageError(f"the request would be {len(data)} bytes, more than a vault reads "
                         f"({signed.MAX_DOCUMENT}); ask for fewer conversations at a time")
    media.ensure_space(path.parent, len(data))
    atomic.write_bytes(path, data)
    _read_back(path, data)
    return path


def _read_back(path: Path, data: bytes) -> None:
    try:
        with open(path, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            back = fh.read(len(data) + 1)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    if back != data:
        raise MediaIOError("read back differs from what was written: the media is failing",
                           path=path)


def on_media(media_root: Path) -> list[Path]:
    folder = media.folder(media_root, media.REQUESTS)
    return media.safe_files(folder, SUFFIX, signed.MAX_DOCUMENT)


# -- answers ------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    """SHA-256 of a file on a stick: never through a link, never waiting on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadDocument("is not a regular file; nothing was read from it", path=path)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    finally:
        os.close(fd)


def answer_media(home: Path, media_root: Path) -> list[Any]:
    """Answer every request on the media (what the daemon calls): see vault.requestrun."""
    from vault import requestrun

    return requestrun.answer_media(Path(home), Path(media_root))

