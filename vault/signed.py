"""Signed JSON documents: receipts, requests, answers, drill reports.

A document is a JSON object ``{"body": {...}, "signatures": [...]}``. Each
signature is ``{"signer": fingerprint, "key": base64 Ed25519 public key,
"sig": base64}`` over ``"chatvault/doc/v1/<kind>\\0" || canonical(body)``,
where ``kind`` is ``body["kind"]``; the domain keeps a receipt from ever
verifying as a request. More than one signature may be present (four-eyes
erasure requests carry two).

Documents are small (at most 1 MiB) and read with that bound, from regular
files only, never through a symbolic link. Their JSON is parsed before the
signature is checked because the signature lives inside it; nothing in the
body is acted on until :func:`verify` returns.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import nacl.exceptions
from nacl.signing import VerifyKey

from vault import atomic, canonical
from vault.errors import BadDocument, UntrustedSigner
from vault.keys import Identity, SignerKey

MAX_DOCUMENT = 1024 * 1024


def _domain(kind: str) -> bytes:
    return f"chatvault/doc/v1/{kind}\x00".encode("ascii")


def sign(body: dict[str, Any], identity: Identity) -> dict[str, Any]:
    if not isinstance(body.get("kind"), str):
        raise ValueError("a signed document's body needs a 'kind'")
    return add_signature({"body": body, "signatures": []}, identity)


def add_signature(doc: dict[str, Any], identity: Identity) -> dict[str, Any]:
    body = doc["body"]
    sig = identity.signing_key.sign(_domain(body["kind"]) + canonical.dumps(body)).signature
    entry = {"signer": identity.fingerprint,
             "key": base64.b64encode(identity.sign_pk).decode("ascii"),
             "sig": base64.b64encode(sig).decode("ascii")}
    doc["signatures"] = [s for s in doc.get("signatures", [])
                         if s.get("signer") != identity.fingerprint] + [entry]
    return doc


def dumps(doc: dict[str, Any]) -> bytes:
    return canonical.dumps(doc) + b"\n"


def load(path: Path) -> dict[str, Any]:
    """Read a document with a size bound; its structure, not yet its signatures.

    Documents come from sticks: a symbolic link is not followed, and a FIFO,
    device or folder is refused unread (:func:`vault.atomic.read_small`).
    """
    name = str(path)
    try:
        data = atomic.read_small(path, MAX_DOCUMENT, follow=False, refuse=BadDocument)
    except OSError as exc:
        raise BadDocument(f"cannot read ({exc.strerror})", path=name) from None
    return parse(data, name)


def parse(data: bytes, name: str) -> dict[str, Any]:
    try:
        doc = canonical.loads(data)
    except canonical.CanonicalError as exc:
        raise BadDocument(f"not JSON ({exc})", path=name) from None
    if (not isinstance(doc, dict) or not isinstance(doc.get("body"), dict)
            or not isinstance(doc.get("signatures"), list)
            or not isinstance(doc["body"].get("kind"), str)):
        raise BadDocument("not a signed chatvault document", path=name)
    return doc


def verify(doc: dict[str, Any], trust: Any, role: str, kind: str, name: str,
           *, minimum: int = 1) -> list[Any]:
    """Check kind and every signature; return the distinct trusted signers.

    Raises :class:`BadDocument` for a wrong kind or a signature that does not
    verify, and the trust store's refusal for unknown, revoked or wrong-role
    signers. ``minimum`` distinct trusted signers are required.
    """
    body = doc["body"]
    if body.get("kind") != kind:
        raise BadDocument(f"is a {body.get('kind')!r} document, expected {kind!r}", path=name)
    message = _domain(kind) + canonical.dumps(body)
    signers: dict[str, Any] = {}
    for item in doc["signatures"][:8]:
        key = _key_of(item, name)
        try:
            VerifyKey(key).verify(message, base64.b64decode(str(item.get("sig", ""))))
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise BadDocument("signature does not verify (forged or altered)",
                              path=name) from None
        entry = trust.require(key, role, what=f"signer of {Path(name).name}")
        signers[entry.fingerprint] = entry
    if len(signers) < minimum:
        raise UntrustedSigner(f"needs {minimum} distinct trusted signature(s), has "
                              f"{len(signers)}", path=name)
    return list(signers.values())


def _key_of(item: Any, name: str) -> bytes:
    if not isinstance(item, dict):
        raise BadDocument("malformed signature entry", path=name)
    try:
        key = base64.b64decode(str(item.get("key", "")), validate=True)
    except ValueError:
        raise BadDocument("signature key is not base64", path=name) from None
    if len(key) != 32:
        raise BadDocument("signature key has the wrong size", path=name)
    return SignerKey(key, item.get("signer"))
