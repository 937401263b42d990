"""Asking the vault from the online side: requests made, signed and put on the stick.

:func:`submit` makes one request (:mod:`vault.requests`), writes it into
``<media>/chatvault/requests/`` atomically and reads it back, and remembers
it in the home's register (:mod:`vault.requestregister`), without its parameters.
The home must trust the vault's key (role ``vault``): the parameters are
sealed to every vault it trusts, to itself, to the key answers go to, and to
the DPO keys it trusts, who may be asked to approve.

:func:`approve` is the second pair of eyes for an erasure: another DPO home
checks who signed the request, reads its parameters, and adds its own
signature in place.

:func:`resolve` gives up on a request no answer will settle (its stick lost,
or it expired on the way and a new one was made): ``request status`` stops
listing it and warning about it; the note says why, in the state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from vault import keys, requestparams, requestregister, requests, signed, timestamps
from vault.errors import NotARecipient, PolicyRefused, UsageError
from vault.home import Home

log = logging.getLogger(__name__)


def submit(home: Path, media_root: Path, action: str, params: dict[str, Any], *,
           answer_to: Path | None = None, days: int = requests.DEFAULT_DAYS,
           passphrase_file: Path | None = None) -> dict[str, Any]:
    """Make, sign and write one request onto the media; remember it."""
    h = Home(Path(home)).require()
    trust = h.trust()
    vaults = trust.with_role("vault")
    if not vaults:
        raise UsageError(f"{h.path} trusts no vault key: run 'chatvault keys trust vault.pub "
                         "--role vault' first (parameters are sealed to it, answers checked "
                         "against it)")
    text = _key_text(answer_to) if answer_to else None
    identity = h.identity(passphrase_file)
    peers = [e.public for e in trust.with_role("dpo")]
    doc = requests.make(identity, action, params, recipients=[e.public for e in vaults] + peers,
                        answer_to=text, days=days)
    path = requests.write(Path(media_root), doc)
    body = doc["body"]
    info = {"request_id": body["request_id"], "action": action, "file": path.name,
            "created_at": body["created_at"], "expires_at": body["expires_at"],
            "digest": requests.digest(body), "vaults": sorted(e.fingerprint for e in vaults),
            "answer_to": keys.parse_public(body["answer_to"]).fingerprint,
            "summary": _summary(action, params), "answers": {}}
    with requestregister.state(h.path) as known:
        known["requests"][body["request_id"]] = info
    log.info("request %s (%s) written to %s", body["request_id"][:16], action, path)
    return {**info, "path": str(path)}


def _key_text(path: Path) -> str:
    try:
        text = keys.key_file_text(path)
    except OSError as exc:
        raise UsageError(f"--answer-to {path}: cannot read ({exc.strerror})") from None
    keys.parse_public(text, str(path))
    return text


def _summary(action: str, params: dict[str, Any]) -> str:
    """What was asked, without naming anyone (kept in the state, shown by status)."""
    if action == "restore":
        what = [f"source {params['source']}"] if params.get("source") else []
        what += [f"{len(params['conversations'])} conversation(s)"] \
            if params.get("conversations") else []
        what += [f"{k} {params[k]}" for k in ("since", "until") if params.get(k)]
        return ", ".join(what)
    return (f"{len(params.get('emails', []))} e-mail address(es), "
            f"{len(params.get('phones', []))} phone number(s)"
            + (f", {len(params['ids'])} platform id(s)" if params.get("ids") else ""))


def approve(home: Path, path: Path, confirm: Callable[[dict[str, Any]], bool], *,
            passphrase_file: Path | None = None) -> dict[str, Any] | None:
    """Add this home's signature to an erasure request (the second pair of eyes).

    The request must be signed by DPO keys this home trusts, not yet by this
    one, unexpired, and its parameters sealed to this home so that the
    approver sees what they approve (``confirm`` is shown them). Returns None
    when ``confirm`` says no.
    """
    h = Home(Path(home)).require()
    doc = signed.load(path)
    identity = h.identity(passphrase_file)
    if identity.fingerprint in {s.get("signer") for s in doc["signatures"]
                                if isinstance(s, dict)}:
        # four eyes refused, as 'erase approve' by the asking operator is: policy, exit 4
        raise PolicyRefused("already signed with this home's key: a different DPO must "
                            "approve", path=path)
    req = requests.verify(doc, h.trust(), str(path))
    if req.action != "erase":
        raise UsageError("only erasure requests take a second signature (four eyes)", path=path)
    if req.expired():
        raise UsageError(f"the request expired at {req.body['expires_at']}; ask for a new one",
                         path=path)
    try:
        params = requestparams.open_params(req, identity)
    except NotARecipient:
        raise UsageError("the request's parameters are not sealed to this home's key, so "
                         "you cannot see what you would approve; the requester must trust "
                         "your key as dpo and make the request again", path=path) from None
    if not confirm(params):
        return None
    signed.add_signature(doc, identity)
    requests.rewrite(path, doc)
    return {"request_id": req.id, "file": str(path), "signers": [
        s["signer"] for s in doc["signatures"]]}


def resolve(home: Path, request_id: str, note: str) -> dict[str, Any]:
    """Stop waiting for ``request_id`` (its id or the 16-character prefix status shows)."""
    if not note.strip():
        raise UsageError("--note is required: why no answer is awaited any more (kept in the "
                         "state)")
    h = Home(Path(home)).require()
    with requestregister.state(h.path) as known:
        found = [rid for rid in known["requests"]
                 if len(request_id) >= 8 and rid.startswith(request_id)]
        if len(found) != 1:
            raise UsageError(f"no request {request_id!r} in this home, or more than one "
                             "starts so (see 'chatvault request status')")
        entry = known["requests"][found[0]]
        if all(entry["answers"].get(v, {}).get("status") in requestregister.FINAL
               for v in entry["vaults"]):
            raise UsageError(f"request {found[0][:16]} is answered already: nothing to resolve")
        entry["resolved"] = {"at": timestamps.now_utc(), "note": note.strip()}
    log.info("request %s resolved by hand: %s", found[0][:16], note.strip())
    return {"request_id": found[0], "file": entry["file"], **entry["resolved"]}
