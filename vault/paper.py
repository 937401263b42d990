"""Paper backups of a secret key: lines a person can type back in.

Every line the operator types back ends in ``/ XXXX``, a four-letter
checksum over what that line says, so a typo is caught in that line and
named:

* ``Name:``, ``Role:``, ``Created:`` and ``Fingerprint:``: the checksum is
  over the field's name and its value (the name exactly as printed; the role
  in lower case, the time in upper case and the fingerprint without spacing,
  as those are read back in any case). The name, role and creation time go
  into the restored public key's self-signature, so a typo there would give
  a key with other metadata (or another role) without a word.
* Eight numbered lines of base32 hold the 64 secret bytes (Ed25519 seed and
  X25519 secret), 8 bytes each; the checksum is over the line's number and
  its data, so a line typed in the wrong place fails too.

Once all is typed, the keys must give the printed fingerprint. Base32 (RFC
4648) has no 0/1/8 so that O, I and B cannot be misread; the numbered lines
are accepted in any case with any spacing.

Backups printed before the metadata lines carried checksums (none of
Role/Created/Fingerprint has one) are still accepted, since a key must not
be lost to a format change: their key bytes and fingerprint are checked as
before, and a warning (logger ``vault.keys``) says that Name, Role and
Created could not be checked, with the values restored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sys
from pathlib import Path

from vault import atomic, keys
from vault.errors import BadKeyFile, UsageError

log = logging.getLogger("vault.keys")

_PER_LINE = 8
_LINES = 2 * keys.KEY_BYTES // _PER_LINE
_DOMAIN = b"chatvault/paper/v1"
_FIELDS = ("Name", "Role", "Created", "Fingerprint")
#: bytes (characters from stdin) a typed-in backup may have; one is under 1 KiB
MAX_BACKUP = 64 * 1024


def _checksum(number: int, data: bytes) -> str:
    raw = hashlib.sha256(_DOMAIN + bytes([number]) + data).digest()[:3]
    return base64.b32encode(raw).decode("ascii")[:4]


def _field_checksum(label: str, value: str) -> str:
    # 0xff cannot start a numbered line's input (numbers are 1..8): no overlap
    raw = hashlib.sha256(_DOMAIN + b"\xff" + label.lower().encode("ascii") + b"\x00"
                         + value.encode("utf-8")).digest()[:3]
    return base64.b32encode(raw).decode("ascii")[:4]


def _group(text: str) -> str:
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def export_text(ident: keys.Identity) -> str:
    secret = ident.sign_seed + ident.box_sk
    lines = [
        "CHATVAULT PAPER KEY BACKUP - keep it where you keep the vault's spare keys",
        "Type every line below back exactly; the group after '/' is that line's checksum.",
    ]
    for label, value in (("Name", ident.name), ("Role", ident.role),
                         ("Created", ident.created), ("Fingerprint", ident.fingerprint)):
        lines.append(f"{label}: {value} / {_field_checksum(label, _normal(label, value, ''))}")
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


def _normal(label: str, value: str, path: str) -> str:
    """A metadata value as it is restored (and checksummed)."""
    if label == "Role":
        return value.lower()
    if label == "Created":
        return value.upper()
    if label == "Fingerprint":
        try:
            return keys.normalise_fingerprint(value)
        except UsageError:
            raise BadKeyFile("the 'Fingerprint:' line is not a fingerprint (24 base32 "
                             "characters); check that line for a typo", path=path) from None
    return value


def _split(raw: str) -> tuple[str, str | None]:
    """``value / CHECK`` -> (value, CHECK); no '/' -> (value, None)."""
    body, slash, check = raw.rpartition("/")
    if not slash:
        return raw.strip(), None
    return body.strip(), "".join(check.split()).upper()


def _metadata(lines: list[str], path: str) -> tuple[dict[str, str], bool]:
    """The Name/Role/Created/Fingerprint values, and whether their checksums were checked."""
    raw = {label: _field(lines, label, path) for label in _FIELDS}
    split = {label: _split(text) for label, text in raw.items()}
    checked = any(split[label][1] is not None for label in _FIELDS[1:])
    if not checked:
        # A name may hold '/' in an old backup; a verifying checksum says it is a new one
        name, check = split["Name"]
        checked = check is not None and check == _field_checksum("Name", name)
    if not checked:
        return {label: _normal(label, text, path) for label, text in raw.items()}, False
    values = {}
    for label in _FIELDS:
        value, check = split[label]
        if check is None:
            raise BadKeyFile(f"the '{label}:' line: the '/ checksum' part is missing",
                             path=path)
        value = _normal(label, value, path)
        if _field_checksum(label, value) != check:
            raise BadKeyFile(f"the '{label}:' line: checksum does not match; check that line "
                             "for a typo", path=path)
        values[label] = value
    return values, True


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


def read_backup(path: Path | None) -> str:
    """The typed-in backup from a small regular file, or from stdin when ``path`` is None.

    A FIFO, device or folder named as the file is refused unread
    (:class:`BadKeyFile`, as for a damaged backup), never waited on; a file
    that cannot be found or read raises its ``OSError``.
    """
    if path is None:
        text = sys.stdin.read(MAX_BACKUP + 1)
        if len(text) > MAX_BACKUP:
            raise BadKeyFile(f"more than {MAX_BACKUP} characters", path="stdin")
        return text
    data = atomic.read_small(path, MAX_BACKUP, refuse=BadKeyFile)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadKeyFile("not a paper backup (not UTF-8 text)", path=path) from None


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
    meta, checked = _metadata(lines, path)
    secret = b"".join(chunks[n] for n in range(1, _LINES + 1))
    ident = keys.from_secrets(meta["Name"], meta["Role"], meta["Created"],
                              secret[:keys.KEY_BYTES], secret[keys.KEY_BYTES:])
    if ident.fingerprint != meta["Fingerprint"]:
        raise BadKeyFile(f"keys give fingerprint {ident.fingerprint}, the paper says "
                         f"{meta['Fingerprint']}", path=path)
    if not checked:
        log.warning(
            "%s is a paper backup from before its Name, Role and Created lines carried "
            "checksums: a typo in them could not be caught (the key lines and fingerprint "
            "were checked). Restoring name %r, role %r, created %s: compare them with the "
            "old public key, then print a new paper backup with 'keys export-paper'",
            path, ident.name, ident.role, ident.created)
    return ident
