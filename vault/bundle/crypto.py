"""Every PyNaCl call the bundle format makes, in one place.

PyNaCl raises a few generic exceptions; this module turns each into the
bundle failure it means (:mod:`vault.errors`), so nothing above it ever
handles a bare ``CryptoError``.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.exceptions
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from vault.errors import BadSignature, CorruptPayload, NotARecipient

KEY_BYTES = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES  # 32
STREAM_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
CHUNK_OVERHEAD = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
SEALED_KEY_BYTES = KEY_BYTES + 48  # X25519 ephemeral key + Poly1305 tag
SIGNATURE_BYTES = 64
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

_SIG_DOMAIN = b"chatvault/bundle/v1/signature\x00"


def new_payload_key() -> bytes:
    return sodium.crypto_secretstream_xchacha20poly1305_keygen()


def seal_key(payload_key: bytes, recipient_box_pk: bytes) -> bytes:
    return SealedBox(PublicKey(recipient_box_pk)).encrypt(payload_key)


def unseal_key(sealed: bytes, private: PrivateKey, path: str) -> bytes:
    try:
        key = SealedBox(private).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise CorruptPayload("the payload key sealed to this identity does not open",
                             path=path) from None
    if len(key) != KEY_BYTES:
        raise CorruptPayload("sealed payload key has the wrong size", path=path)
    return key


def sign_digest(signing_key: SigningKey, digest: bytes) -> bytes:
    return signing_key.sign(_SIG_DOMAIN + digest).signature


def verify_digest(sign_pk: bytes, digest: bytes, signature: bytes, path: str) -> None:
    try:
        VerifyKey(sign_pk).verify(_SIG_DOMAIN + digest, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise BadSignature("signature does not match the contents (altered, or "
                           "signed by another key)", path=path) from None


def signed_hasher() -> "hashlib._Hash":
    """The hash whose digest the signature covers (everything before it)."""
    return hashlib.sha512()


class Encryptor:
    """One secretstream in push mode; every chunk binds ``ad`` (the header hash)."""

    def __init__(self, key: bytes, ad: bytes) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key)
        self._ad = ad

    def push(self, chunk: bytes, final: bool) -> bytes:
        tag = TAG_FINAL if final else TAG_MESSAGE
        return sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, chunk, self._ad, tag)


class Decryptor:
    """One secretstream in pull mode; FINAL must come exactly at the last chunk."""

    def __init__(self, key: bytes, stream_header: bytes, ad: bytes, path: str) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._ad = ad
        self._path = path
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(
                self._state, stream_header, key)
        except (nacl.exceptions.CryptoError, ValueError):
            raise CorruptPayload("stream header does not open", path=path) from None

    def pull(self, chunk: bytes, expect_final: bool, index: int) -> bytes:
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                self._state, chunk, self._ad)
        except (nacl.exceptions.CryptoError, ValueError):
            raise CorruptPayload(f"chunk {index} fails authentication (altered, "
                                 "reordered or from another bundle)", path=self._path) from None
        if tag == TAG_FINAL and not expect_final:
            raise CorruptPayload(f"chunk {index} is marked final but more chunks follow",
                                 path=self._path)
        if expect_final and tag != TAG_FINAL:
            raise CorruptPayload(f"last chunk {index} is not marked final (truncated stream)",
                                 path=self._path)
        if tag not in (TAG_MESSAGE, TAG_FINAL):
            raise CorruptPayload(f"chunk {index} has an unexpected tag {tag}", path=self._path)
        return plain


def find_recipient(recipients: list[tuple[bytes, bytes]], private: PrivateKey,
                   path: str) -> bytes:
    """The sealed key addressed to ``private``'s public key."""
    mine = bytes(private.public_key)
    for box_pk, sealed in recipients:
        if sodium.sodium_memcmp(box_pk, mine):
            return unseal_key(sealed, private, path)
    raise NotARecipient("this bundle is not sealed to this identity's key", path=path)
