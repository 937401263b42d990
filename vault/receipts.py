"""Receipts: the vault's signed word that it holds a bundle (or why it does not).

The vault writes one receipt per bundle it found on the media, into
``<media>/chatvault/receipts/``, named after the bundle file and the vault
(``web-00000003.ABCDEFGHI.receipt.json``), as a signed document
(:mod:`vault.signed`, kind ``receipt``) with this body::

    kind            "receipt"
    bundle_file     the bundle's file name on the media
    bundle_sha256   SHA-256 of the bundle file as the vault read it
    bundle_id, source, sequence   from the verified header (absent when the
                    bundle could not be verified)
    status          "ingested" | "duplicate" | "quarantined"
    reason          why it was quarantined (or a note, e.g. a chain gap)
    counts          {"conversations": n, "messages": n} taken in
    vault           the vault's fingerprint
    at              when (the vault's clock)
    audit_head      hash of the vault's audit log head at that moment
    audit_entries   number of that head entry (0: an empty log)
    audit_chain     hash of the log's first entry (64 zeros: empty); a new
                    chain after ``vault rebuild``

The exporter verifies receipts against the vault keys it trusts (role
``vault``) and matches them to its bundles by ``bundle_sha256``; it keeps
the audit position (:func:`vault.audit.position`) each states and judges
them against each other (:mod:`vault.acks`). A vault
does not rewrite a receipt of its own that already says the same
(:func:`already_said`): a stick inserted again keeps the receipts it has.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault import atomic, media, signed, timestamps
from vault.audit import Position
from vault.errors import BadDocument, ChatvaultError, UntrustedSigner
from vault.keys import Identity

SUFFIX = ".receipt.json"
STATUSES = ("ingested", "duplicate", "quarantined")


@dataclass(frozen=True)
class Receipt:
    path: Path
    body: dict[str, Any]
    vault: str  # fingerprint of the verified signer

    @property
    def status(self) -> str:
        return str(self.body["status"])

    @property
    def bundle_sha256(self) -> str:
        return str(self.body["bundle_sha256"])


def make(identity: Identity, *, bundle_file: str, bundle_sha256: str, status: str,
         reason: str | None = None, meta: dict[str, Any] | None = None,
         counts: dict[str, int] | None = None,
         audit: Position | None = None) -> dict[str, Any]:
    """A signed receipt; ``audit`` is the log's position as the receipt is made."""
    if status not in STATUSES:
        raise ValueError(f"unknown receipt status {status!r}")
    body: dict[str, Any] = {
        "kind": "receipt", "bundle_file": bundle_file, "bundle_sha256": bundle_sha256,
        "status": status, "vault": identity.fingerprint, "at": timestamps.now_utc(),
        "counts": counts or {},
    }
    if reason:
        body["reason"] = reason
    if audit is not None:
        body.update(audit.fields())
    if meta:
        for key in ("bundle_id", "source", "sequence"):
            if key in meta:
                body[key] = meta[key]
    return signed.sign(body, identity)


def file_name(bundle_file: str, vault_fingerprint: str) -> str:
    stem = bundle_file[:-4] if bundle_file.endswith(".cvb") else bundle_file
    return f"{stem}.{vault_fingerprint.replace('-', '')[:9]}{SUFFIX}"


def write(media_path: Path, doc: dict[str, Any]) -> Path:
    """Write a receipt onto the media atomically; returns its path."""
    folder = media.folder(media_path, media.RECEIPTS, create=True)
    body = doc["body"]
    target = folder / file_name(body["bundle_file"], body["vault"])
    data = signed.dumps(doc)
    media.ensure_space(folder, len(data))
    atomic.write_bytes(target, data)
    media.hand_over(media_path, folder, target)
    return target


def verify_file(path: Path, trust: Any) -> Receipt:
    """Load and verify one receipt; raises the refusal (forged, untrusted...)."""
    doc = signed.load(path)
    signers = signed.verify(doc, trust, "vault", "receipt", str(path))
    body = doc["body"]
    for key in ("bundle_sha256", "status", "bundle_file"):
        if not isinstance(body.get(key), str):
            raise BadDocument(f"receipt field {key!r} missing", path=path)
    if body["status"] not in STATUSES:
        raise BadDocument(f"unknown receipt status {body['status']!r}", path=path)
    return Receipt(path, body, signers[0].fingerprint)


def on_media(media_path: Path, quiet: bool = False) -> list[Path]:
    """The receipts on a stick; ``quiet``: odd entries were logged by an earlier listing."""
    folder = media.folder(media_path, media.RECEIPTS)
    return media.safe_files(folder, SUFFIX, signed.MAX_DOCUMENT, quiet=quiet)


class _OnlyKey:
    """A trust store that knows one signing key (a vault recognising its own receipts)."""

    def __init__(self, sign_pk: bytes) -> None:
        self.sign_pk = sign_pk
        self.fingerprint = sign_pk.hex()

    def require(self, sign_pk: bytes, role: str, what: str = "signer") -> "_OnlyKey":
        if sign_pk != self.sign_pk:
            raise UntrustedSigner(f"{what} is not the expected key")
        return self


def signed_by(doc: dict[str, Any], sign_pk: bytes) -> bool:
    """Whether a receipt is signed, validly and only, by ``sign_pk``."""
    try:
        signed.verify(doc, _OnlyKey(sign_pk), "vault", "receipt", "receipt")
    except ChatvaultError:
        return False
    return True


def already_said(media_path: Path, doc: dict[str, Any]) -> Path | None:
    """The receipt on the media, by the same signer, that already says what ``doc`` says.

    Same file, same hash, same status, reason, position and counts; an
    ``ingested`` receipt also stands for a later ``duplicate``. A receipt
    that is missing, damaged or signed by another key is not the same.
    """
    body = doc["body"]
    path = media.folder(media_path, media.RECEIPTS) / file_name(body["bundle_file"],
                                                                body["vault"])
    try:
        old = signed.load(path)
    except ChatvaultError:
        return None
    if not signed_by(old, base64.b64decode(doc["signatures"][-1]["key"])):
        return None
    was = old["body"]
    if any(was.get(k) != body.get(k) for k in ("bundle_file", "bundle_sha256", "vault")):
        return None
    if was.get("status") == "ingested" and body["status"] == "duplicate":
        return path
    same = all(was.get(k) == body.get(k) for k in ("status", "reason", "source", "sequence",
                                                   "bundle_id", "counts"))
    return path if same else None
