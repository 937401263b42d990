"""Paper backups of a secret key: lines a person can type back in.

The 64 secret bytes (Ed25519 seed and X25519 secret) are written as eight
numbered lines of base32, 8 bytes each, every line ending in a four-letter
checksum over its number and its data. A typo in a line is caught in that
line and named; a line typed in the wrong place fails its checksum too. The
name, role and creation time are printed as well (they are part of the
self-signed public key), and the fingerprint is checked once all is typed.

Base32 (RFC 4648) has no 0/1/8 so that O, I and B cannot be misread; input
is accepted in any case with any spacing.
"""

from __future__ import annotations

import base64
import hashlib

from vault import keys
from vault.errors import BadKeyFile

_PER_LINE = 8
_LINES = 2 * keys.KEY_BYTES // _PER_LINE


def _checksum(number: int, data: bytes) -> str:
    raw = hashlib.sha256(b"chatvault/paper/v1" + bytes([number]) + data).digest()[:3]
    return base64.b32encode(raw).decode("ascii")[:4]


def _group(text: str) -> str:
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def export_text(ident: keys.Identity) -> str:
    secret = ident.sign_seed + ident.box_sk
    lines = [
        "CHATVAULT PAPER KEY BACKUP - keep it where you keep the vault's spare keys",
        f"Name: {ident.name}",
        f"Role: {ident.role}",
        f"Created: {ident.created}",
        f"Fingerprint: {ident.fingerprint}",
        "Type each numbered line back exactly; its last group is a checksum.",
    ]
    for n in range(_LINES):
        data = secret[n * _PER_LINE:(n + 1) * _PER_LINE]
        text = base64.b32encode(data).decode("ascii").rstrip("=")
        lines.append(f"{n + 1:02d}: {_group(text)} / {_checksum(n + 1, data)}")
    return "\n".join(lines) + "\n"


def _field(lines: list[str], name: str, path: str) -> str:
    for ln in lines:
        key, sep, value = ln.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    raise BadKeyFile(f"the '{name}:' line is missing", path=path)


def _data_line(ln: str, path: str) -> tuple[int, bytes] | None:
    head, sep, rest = ln.partition(":")
    if not sep or not head.strip().isdigit():
        return None
    number = int(head.strip())
    body, slash, check = rest.partition("/")
    if not slash:
        raise BadKeyFile(f"line {number:02d}: the '/ checksum' part is missing", path=path)
    text = "".join(body.split()).upper()
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise BadKeyFile(f"line {number:02d}: not base32 (letters A-Z, digits 2-7)",
                         path=path) from None
    if len(data) != _PER_LINE or _checksum(number, data) != "".join(check.split()).upper():
        raise BadKeyFile(f"line {number:02d}: checksum does not match; check that line for a "
                         "typo", path=path)
    return number, data


def import_text(text: str, path: str = "paper backup") -> keys.Identity:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    chunks: dict[int, bytes] = {}
    for ln in lines:
        parsed = _data_line(ln, path)
        if parsed:
            chunks[parsed[0]] = parsed[1]
    missing = [n for n in range(1, _LINES + 1) if n not in chunks]
    if missing:
        raise BadKeyFile(f"missing line(s) {', '.join(f'{n:02d}' for n in missing)}",
                         path=path)
    secret = b"".join(chunks[n] for n in range(1, _LINES + 1))
    ident = keys.from_secrets(_field(lines, "Name", path), _field(lines, "Role", path),
                              _field(lines, "Created", path).upper(), secret[:keys.KEY_BYTES],
                              secret[keys.KEY_BYTES:])
    expected = keys.normalise_fingerprint(_field(lines, "Fingerprint", path))
    if ident.fingerprint != expected:
        raise BadKeyFile(f"keys give fingerprint {ident.fingerprint}, the paper says "
                         f"{expected}", path=path)
    return ident
