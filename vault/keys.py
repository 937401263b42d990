"""Identities: an Ed25519 signing key pair and an X25519 encryption key pair.

Every chatvault home has one identity. Its **fingerprint** names it
everywhere (bundle headers, receipts, the trust store): the first 120 bits of
SHA-256 over both public keys, in base32, grouped by four
(``ABCD-EFGH-IJKL-MNOP-QRST-UVWX``). Both key files show it, so an operator
can compare a printed public key with the secret key it belongs to.

Key files are small armoured text files, ``Field: value`` lines between
BEGIN/END lines, so they can be mailed, printed and read aloud. The public
file carries a self-signature over its name, role, creation time and keys,
so none of them can be edited unnoticed. The secret file is written 0600; it
may be wrapped with a passphrase (Argon2id, then XSalsa20-Poly1305
SecretBox, both from PyNaCl).

What this does not protect: a secret key file without a passphrase is only as
safe as the file system it is on (see ``doctor`` and DESIGN §10).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.public import PrivateKey, PublicKey as BoxPublicKey
from nacl.signing import SigningKey, VerifyKey

from vault import atomic, canonical, timestamps
from vault.errors import (BadKeyFile, BadPassphrase, MediaMissing, PassphraseNeeded,
                          UsageError)

ROLES = ("exporter", "vault", "restore", "requester", "dpo", "drill")

KEY_BYTES = 32
#: bytes a public or secret key file may have (one is well under 2 KiB)
MAX_KEY_FILE = 64 * 1024
#: bytes a passphrase file may have
MAX_PASSPHRASE_FILE = 64 * 1024
_FP_DOMAIN = b"chatvault/identity/v1\x00"
_SELF_SIG_DOMAIN = b"chatvault/public-key/v1\x00"
_PUB_ARMOR = "CHATVAULT PUBLIC KEY"
_SEC_ARMOR = "CHATVAULT SECRET KEY"

# Argon2id settings for wrapping a secret key: "moderate" costs ~0.7 s and
# 256 MiB here. Only the test suite may switch to cheap settings (see
# kdf_limits), and what was used is written into the file.
_KDF_OPS = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
_KDF_MEM = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
_KDF_MAX_MEM = 2 * 1024**3  # refuse files that ask for more (a DoS, not a key)


def kdf_limits() -> tuple[int, int]:
    """Argon2id (opslimit, memlimit) for new wrappings.

    Cheap settings are honoured only inside a pytest run
    (``PYTEST_CURRENT_TEST`` set) that also asks for them explicitly.
    """
    if os.environ.get("CHATVAULT_TEST_CHEAP_KDF") == "1" and os.environ.get(
            "PYTEST_CURRENT_TEST"):
        return nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN
    return _KDF_OPS, _KDF_MEM


def fingerprint_of(sign_pk: bytes, box_pk: bytes) -> str:
    raw = hashlib.sha256(_FP_DOMAIN + sign_pk + box_pk).digest()[:15]
    text = base64.b32encode(raw).decode("ascii")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def normalise_fingerprint(text: str) -> str:
    """Accept a fingerprint typed with any case, spaces or dashes."""
    flat = "".join(ch for ch in text.upper() if ch.isalnum())
    if len(flat) != 24:
        raise UsageError(f"not a fingerprint (24 base32 characters expected): {text!r}")
    return "-".join(flat[i:i + 4] for i in range(0, 24, 4))


class SignerKey(bytes):
    """A signing key as a bundle or document carries it, with the fingerprint it claims.

    A fingerprint covers both public keys, so a signing key alone cannot give
    it; yet an operator refused an unknown signer needs the fingerprint that
    ``keys list`` and ``keys show`` print to compare. Bundles and signed
    documents name their signer's fingerprint: it travels here, unverified,
    for the trust store's refusal to quote. Trust is decided on the key bytes
    only; ``claimed`` (None unless well-formed) only words the message.
    """

    claimed: str | None

    def __new__(cls, key: bytes, claimed: object = None) -> "SignerKey":
        obj = super().__new__(cls, key)
        obj.claimed = None
        if isinstance(claimed, str) and len(claimed) < 64:
            try:
                obj.claimed = normalise_fingerprint(claimed)
            except UsageError:
                pass
        return obj


@dataclass(frozen=True)
class PublicIdentity:
    """What others need to know of an identity: keys, name, role."""

    name: str
    role: str
    created: str
    sign_pk: bytes
    box_pk: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.sign_pk, self.box_pk)

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.sign_pk)

    @property
    def box_key(self) -> BoxPublicKey:
        return BoxPublicKey(self.box_pk)

    def _signed_fields(self) -> bytes:
        return _SELF_SIG_DOMAIN + canonical.dumps({
            "box": _b64(self.box_pk), "created": self.created, "name": self.name,
            "role": self.role, "sign": _b64(self.sign_pk)})

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "created": self.created,
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Identity(PublicIdentity):
    """An identity with its secret halves: signs bundles and opens them."""

    sign_seed: bytes = b""
    box_sk: bytes = b""

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.sign_seed)

    @property
    def private_key(self) -> PrivateKey:
        return PrivateKey(self.box_sk)

    def public(self) -> PublicIdentity:
        return PublicIdentity(self.name, self.role, self.created, self.sign_pk, self.box_pk)


def generate(name: str, role: str) -> Identity:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    sk = SigningKey.generate()
    bk = PrivateKey.generate()
    return from_secrets(name, role, timestamps.now_utc(), bytes(sk), bytes(bk))


def from_secrets(name: str, role: str, created: str, sign_seed: bytes,
                 box_sk: bytes) -> Identity:
    sk = SigningKey(sign_seed)
    bk = PrivateKey(box_sk)
    return Identity(name, role, created, bytes(sk.verify_key), bytes(bk.public_key),
                    sign_seed, box_sk)


# -- armoured text files ---------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int | None, what: str, path: str) -> bytes:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise BadKeyFile(f"{what} is not valid base64", path=path) from None
    if size is not None and len(data) != size:
        raise BadKeyFile(f"{what} has {len(data)} bytes, expected {size}", path=path)
    return data


def _armor(kind: str, fields: list[tuple[str, str]]) -> str:
    lines = [f"-----BEGIN {kind}-----"]
    lines += [f"{k}: {v}" for k, v in fields]
    lines.append(f"-----END {kind}-----")
    return "\n".join(lines) + "\n"


def _unarmor(text: str, kind: str, path: str) -> dict[str, str]:
    if len(text) > 64 * 1024:
        raise BadKeyFile("too large for a key file", path=path)
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        start = lines.index(f"-----BEGIN {kind}-----")
        end = lines.index(f"-----END {kind}-----", start)
    except ValueError:
        raise BadKeyFile(f"no '{kind}' block found", path=path) from None
    fields: dict[str, str] = {}
    for ln in lines[start + 1:end]:
        if not ln or ln.startswith("#"):
            continue
        key, sep, value = ln.partition(":")
        if not sep:
            raise BadKeyFile(f"line {ln[:30]!r} is not 'Field: value'", path=path)
        fields[key.strip()] = value.strip()
    return fields


def _need(fields: dict[str, str], key: str, path: str) -> str:
    if key not in fields:
        raise BadKeyFile(f"field {key!r} is missing", path=path)
    return fields[key]


def public_text(ident: PublicIdentity, self_sig: bytes) -> str:
    return _armor(_PUB_ARMOR, [
        ("Name", ident.name), ("Role", ident.role), ("Created", ident.created),
        ("Fingerprint", ident.fingerprint), ("Sign-Ed25519", _b64(ident.sign_pk)),
        ("Box-X25519", _b64(ident.box_pk)), ("Self-Signature", _b64(self_sig)),
    ])


def public_key_text(ident: Identity) -> str:
    """The mailable public key file of an identity, self-signed."""
    sig = ident.signing_key.sign(ident._signed_fields()).signature
    return public_text(ident.public(), sig)


def parse_public(text: str, path: str = "public key") -> PublicIdentity:
    """Parse and check a public key file: fingerprint and self-signature must hold."""
    f = _unarmor(text, _PUB_ARMOR, path)
    ident = PublicIdentity(
        _need(f, "Name", path), _need(f, "Role", path), _need(f, "Created", path),
        _unb64(_need(f, "Sign-Ed25519", path), KEY_BYTES, "Sign-Ed25519", path),
        _unb64(_need(f, "Box-X25519", path), KEY_BYTES, "Box-X25519", path))
    if normalise_fingerprint(_need(f, "Fingerprint", path)) != ident.fingerprint:
        raise BadKeyFile("fingerprint does not match the keys (damaged or edited)", path=path)
    sig = _unb64(_need(f, "Self-Signature", path), 64, "Self-Signature", path)
    try:
        ident.verify_key.verify(ident._signed_fields(), sig)
    except nacl.exceptions.BadSignatureError:
        raise BadKeyFile("self-signature does not verify (name, role or date edited)",
                         path=path) from None
    return ident


def key_file_text(path: Path) -> str:
    """The text of a key file someone gave: a small regular file, never waited on.

    A FIFO, device or folder, or a file above :data:`MAX_KEY_FILE`, is
    :class:`BadKeyFile` (exit 3) and is not read; failing to find or read
    the file is left to the caller as the ``OSError`` it is.
    """
    data = atomic.read_small(path, MAX_KEY_FILE, refuse=BadKeyFile)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadKeyFile("not a key file (not UTF-8 text)", path=path) from None


def load_public(path: Path) -> PublicIdentity:
    try:
        text = key_file_text(path)
    except FileNotFoundError:
        # A missing file named on the command line is 5, as for a bundle.
        raise MediaMissing("no such public key file", path=path) from None
    except OSError as exc:
        raise BadKeyFile(f"cannot read: {exc.strerror or exc}", path=path) from None
    return parse_public(text, str(path))


def secret_key_text(ident: Identity, passphrase: bytes | None = None) -> str:
    secret = ident.sign_seed + ident.box_sk
    fields = [("Name", ident.name), ("Role", ident.role), ("Created", ident.created),
              ("Fingerprint", ident.fingerprint)]
    if passphrase is None:
        fields += [("Protection", "none"), ("Secret", _b64(secret))]
        return _armor(_SEC_ARMOR, fields)
    ops, mem = kdf_limits()
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                   opslimit=ops, memlimit=mem)
    boxed = nacl.secret.SecretBox(key).encrypt(secret)
    fields += [("Protection", "argon2id-secretbox"), ("KDF-Ops", str(ops)),
               ("KDF-Mem", str(mem)), ("Salt", _b64(salt)), ("Secret", _b64(bytes(boxed)))]
    return _armor(_SEC_ARMOR, fields)


def parse_secret(text: str, path: str, passphrase: bytes | None = None) -> Identity:
    f = _unarmor(text, _SEC_ARMOR, path)
    protection = _need(f, "Protection", path)
    if protection == "none":
        secret = _unb64(_need(f, "Secret", path), 2 * KEY_BYTES, "Secret", path)
    elif protection == "argon2id-secretbox":
        secret = _unwrap(f, path, passphrase)
    else:
        raise BadKeyFile(f"unknown protection {protection!r}", path=path)
    ident = from_secrets(_need(f, "Name", path), _need(f, "Role", path),
                         _need(f, "Created", path), secret[:KEY_BYTES], secret[KEY_BYTES:])
    if normalise_fingerprint(_need(f, "Fingerprint", path)) != ident.fingerprint:
        raise BadKeyFile("fingerprint does not match the secret key (damaged)", path=path)
    return ident


def secret_fingerprint(text: str, path: str) -> tuple[str, str]:
    """(fingerprint, protection) of a secret key file, checked without its passphrase.

    Armour, fields and sizes are checked; an unprotected key is parsed in
    full (its keys must give its fingerprint); a passphrase-protected one can
    only vouch for the fingerprint it states until it is unwrapped.
    """
    f = _unarmor(text, _SEC_ARMOR, path)
    protection = _need(f, "Protection", path)
    if protection == "none":
        return parse_secret(text, path).fingerprint, protection
    if protection != "argon2id-secretbox":
        raise BadKeyFile(f"unknown protection {protection!r}", path=path)
    _unb64(_need(f, "Salt", path), nacl.pwhash.argon2id.SALTBYTES, "Salt", path)
    boxed = nacl.secret.SecretBox.NONCE_SIZE + 2 * KEY_BYTES + nacl.secret.SecretBox.MACBYTES
    _unb64(_need(f, "Secret", path), boxed, "Secret", path)
    try:
        return normalise_fingerprint(_need(f, "Fingerprint", path)), protection
    except UsageError:
        raise BadKeyFile("the Fingerprint field is not a fingerprint", path=path) from None


def _unwrap(f: dict[str, str], path: str, passphrase: bytes | None) -> bytes:
    if passphrase is None:
        raise PassphraseNeeded("the secret key is passphrase-protected; set "
                               "CHATVAULT_PASSPHRASE_FILE (or --passphrase-file where the "
                               "command has it, or the systemd credential "
                               "'chatvault-passphrase')", path=path)
    try:
        ops, mem = int(_need(f, "KDF-Ops", path)), int(_need(f, "KDF-Mem", path))
    except ValueError:
        raise BadKeyFile("KDF-Ops / KDF-Mem are not numbers", path=path) from None
    if not (0 < mem <= _KDF_MAX_MEM and 0 < ops <= 64):
        raise BadKeyFile("KDF settings out of range", path=path)
    salt = _unb64(_need(f, "Salt", path), nacl.pwhash.argon2id.SALTBYTES, "Salt", path)
    boxed = _unb64(_need(f, "Secret", path), None, "Secret", path)
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                   opslimit=ops, memlimit=mem)
    try:
        secret = nacl.secret.SecretBox(key).decrypt(boxed)
    except nacl.exceptions.CryptoError:
        raise BadPassphrase("wrong passphrase (or damaged key file)", path=path) from None
    if len(secret) != 2 * KEY_BYTES:
        raise BadKeyFile("unwrapped secret has the wrong size", path=path)
    return secret


def read_passphrase(path: Path | None) -> bytes | None:
    """The passphrase from a file, ``CHATVAULT_PASSPHRASE_FILE``, or a systemd credential."""
    if path is None:
        env = os.environ.get("CHATVAULT_PASSPHRASE_FILE")
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if env:
            path = Path(env)
        elif creds and (Path(creds) / "chatvault-passphrase").is_file():
            path = Path(creds) / "chatvault-passphrase"
        else:
            return None
    try:
        data = atomic.read_small(path, MAX_PASSPHRASE_FILE, refuse=UsageError, pipes=True)
    except OSError as exc:
        raise UsageError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    data = data.rstrip(b"\r\n")
    if not data:
        raise UsageError(f"passphrase file {path} is empty")
    return data


def write_secret(path: Path, text: str) -> None:
    """Write a secret key file 0600 from the first byte (never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
