"""A request's parameters: checked on both sides, sealed to whoever may read them.

The parameters name people and travel on a stick that can be lost, so they
never go in clear: :func:`seal_params` encrypts their canonical JSON under a
fresh key sealed to each recipient (the layout is drawn in
:mod:`vault.requests`), :func:`open_params` opens them with one recipient's
identity. :func:`check_params` holds them to what each action takes, when a
request is made and again when the vault opens one; its errors name the
field, never the value.
"""

from __future__ import annotations

import base64
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Sequence

from vault import canonical, identifiers, keys, timestamps
from vault.bundle import crypto
from vault.errors import BadDocument, UsageError

if TYPE_CHECKING:
    from vault.requests import Request

MAX_IDENTIFIERS, MAX_CONVERSATIONS, MAX_TEXT = 20, 10_000, 500

_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DAY = re.compile(r"^\d{4}-\d\d-\d\d$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARAMS_DOMAIN = b"chatvault/request/v1/params\x00"
_FIELDS = {"restore": {"source", "since", "until", "conversations"},
           "dsar": {"emails", "phones", "ids", "received", "note"},
           "erase": {"emails", "phones", "ids", "reason"}}


def check_params(action: str, params: Any) -> dict[str, Any]:
    """The parameters of ``action``, checked; errors name the field, never its value."""
    if not isinstance(params, dict):
        raise UsageError("parameters are not an object")
    unknown = sorted(str(k)[:40] for k in set(params) - _FIELDS[action])
    if unknown:
        raise UsageError(f"unknown parameter(s): {', '.join(unknown)}")
    if action == "restore":
        _check_restore(params)
        return params
    emails, phones = params.get("emails", []), params.get("phones", [])
    ids = params.get("ids", [])
    _check_list(emails, "e-mail address", MAX_IDENTIFIERS, 320)
    _check_list(phones, "phone number", MAX_IDENTIFIERS, 64)
    _check_list(ids, "platform id", MAX_IDENTIFIERS, 200)
    if not emails and not phones and not ids:
        raise UsageError("give at least one --email, --phone or --id (a name alone is never "
                         "enough)")
    for n, text in enumerate(ids, 1):
        platform, _, value = text.partition(":")
        if not platform.strip() or not value.strip():
            raise UsageError(f"platform id number {n} is not PLATFORM:ID")
    for n, text in enumerate(emails, 1):
        if identifiers.normalise_email(text) is None:
            raise UsageError(f"e-mail address number {n} is not an e-mail address")
    for n, text in enumerate(phones, 1):
        if sum(c.isdigit() for c in text) < 6:
            raise UsageError(f"phone number {n} has too few digits")
    if action == "dsar":
        _check_day(params.get("received"), "--received")
        _check_text(params.get("note"), "--note", required=False)
    else:
        _check_text(params.get("reason"), "--reason", required=True)
    return params


def check_online(action: str, params: dict[str, Any]) -> None:
    """What the vault would refuse as malformed a trip later, refused before writing.

    The vault judges by its own clock and its own checks (``dsar open``,
    ``erase``); these are the same checks made here with this machine's.
    """
    check_params(action, params)
    if action == "dsar" and date.fromisoformat(params["received"]) > datetime.now(
            timestamps.UTC).date():
        raise UsageError("--received: the received date is in the future")
    if action == "erase":
        from vault.erasure import check_reason

        check_reason(params["reason"])  # no identifier in a reason the audit log keeps


def _check_restore(params: dict[str, Any]) -> None:
    source, convs = params.get("source"), params.get("conversations")
    if source is not None and (not isinstance(source, str) or not _SOURCE.match(source)):
        raise UsageError("--source: not a source name ([A-Za-z0-9._-], at most 64)")
    if convs is not None:
        _check_list(convs, "conversation id", MAX_CONVERSATIONS, 256)
    if source is None and not convs:
        raise UsageError("say what to restore: --source or --conversation")
    for key in ("since", "until"):
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 40:
            raise UsageError(f"--{key}: not a date")
        try:
            if _DAY.match(value):
                date.fromisoformat(value)
            else:
                timestamps.parse(value)
        except ValueError:
            raise UsageError(f"--{key}: not a date (YYYY-MM-DD) or RFC 3339 time") from None
    _check_window(params.get("since"), params.get("until"))


def _check_window(since: str | None, until: str | None) -> None:
    """As ``restore create`` checks it: refused here, not by the vault a trip later."""
    from vault.restoreplan import parse_day

    if since and until and parse_day(since) >= parse_day(until, True):
        raise UsageError(f"--since {since} is after --until {until}: there would be nothing "
                         "to restore")


def _check_list(value: Any, what: str, most: int, longest: int) -> None:
    if not isinstance(value, list) or len(value) > most:
        raise UsageError(f"at most {most} {what}(s), as a list")
    for n, item in enumerate(value, 1):
        if not isinstance(item, str) or not 0 < len(item) <= longest or _CONTROL.search(item):
            raise UsageError(f"{what} number {n}: empty, too long or with control characters")


def _check_day(value: Any, what: str) -> None:
    try:
        if isinstance(value, str) and _DAY.match(value):
            date.fromisoformat(value)
            return
    except ValueError:
        pass
    raise UsageError(f"{what}: expected a date as YYYY-MM-DD")


def _check_text(value: Any, what: str, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise UsageError(f"{what}: required, at most {MAX_TEXT} characters")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ad(request_id: str, action: str) -> bytes:
    return _PARAMS_DOMAIN + f"{request_id}\x00{action}".encode("ascii")


def seal_params(params: dict[str, Any], request_id: str, action: str,
                recipients: Sequence[keys.PublicIdentity]) -> dict[str, Any]:
    key = crypto.new_payload_key()
    enc = crypto.Encryptor(key, _ad(request_id, action))
    ciphertext = enc.push(canonical.dumps(params), final=True)
    unique = {r.fingerprint: r for r in recipients}
    return {"header": _b64(enc.header), "ciphertext": _b64(ciphertext),
            "recipients": [{"fingerprint": fp, "box": _b64(r.box_pk),
                            "key": _b64(crypto.seal_key(key, r.box_pk))}
                           for fp, r in sorted(unique.items())]}


def open_params(req: Request, identity: keys.Identity) -> dict[str, Any]:
    """Decrypt and check the parameters (NotARecipient when not sealed to ``identity``)."""
    name = str(req.path)
    sealed = req.body["params"]
    try:
        header = base64.b64decode(sealed["header"], validate=True)
        ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
        pairs = [(base64.b64decode(r["box"], validate=True),
                  base64.b64decode(r["key"], validate=True))
                 for r in sealed["recipients"][:64]]
    except (KeyError, TypeError, ValueError):
        raise BadDocument("sealed parameters are malformed", path=name) from None
    key = crypto.find_recipient(pairs, identity.private_key, name)
    plain = crypto.Decryptor(key, header, _ad(req.id, req.action), name).pull(
        ciphertext, True, 0)
    try:
        params = canonical.loads(plain)
    except canonical.CanonicalError:
        raise BadDocument("sealed parameters are not JSON", path=name) from None
    return check_params(req.action, params)
