"""Attachment files an export names: hashed where they lie, never followed outside it.

Exports name attachments by relative path (a Telegram ``photos/…``, a
Messenger ``files/…``). The name is untrusted, so only a plain relative path
to a regular file under one of the export's own folders is read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

MAX_ATTACHMENT_BYTES = 2 * 1024**3


def digest_stream(stream: Any, cap: int = MAX_ATTACHMENT_BYTES) -> tuple[str, int] | None:
    """(sha256, size) of a binary stream, or None when it holds more than ``cap`` bytes."""
    h, size = hashlib.sha256(), 0
    while chunk := stream.read(1024 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        h.update(chunk)
    return h.hexdigest(), size


def local_file_digest(bases: list[Path], relative: str) -> tuple[str, int] | None:
    """(sha256, size) of an attachment an export names by relative path, if present.

    The name is untrusted: absolute paths, ``..`` and symlinks are refused, and
    each candidate folder in ``bases`` is tried in order.
    """
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        return None
    for base in bases:
        candidate = base / rel
        try:
            if candidate.is_symlink() or not candidate.is_file():
                continue
            with open(candidate, "rb") as fh:
                return digest_stream(fh)
        except OSError:
            continue
    return None
