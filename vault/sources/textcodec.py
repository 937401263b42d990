"""Export files as text: UTF-8 or a clear word on what they are instead.

Every reader that decodes text goes through here, so a file saved as
UTF-16 by a Windows tool, or as Latin-1, is named with what it looks like
and what to do, never reported as a decoding traceback.
"""

from __future__ import annotations

from pathlib import Path

from vault.errors import UnreadableExport

_RESAVE = "re-save it as UTF-8"
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def wide_text(data: bytes) -> str | None:
    """How ``data`` shows it is UTF-16 or UTF-32 text, or None when it does not.

    A byte order mark says so; without one, the first 64 bytes having a 0 in
    every other place (ASCII in UTF-16) do. Such bytes may still decode as
    UTF-8 (NUL is valid UTF-8), so text readers check this first.
    """
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return f"it starts with a {name} byte order mark, so it looks like {name}"
    head = data[:64]
    pairs = len(head) // 2
    if pairs < 2:
        return None
    low = sum(1 for i in range(0, 2 * pairs, 2) if head[i] and not head[i + 1])
    high = sum(1 for i in range(0, 2 * pairs, 2) if not head[i] and head[i + 1])
    if max(low, high) * 4 >= pairs * 3:
        return "every other byte is 0, so it looks like UTF-16 without a byte order mark"
    return None


def not_utf8(data: bytes, where: str = "") -> str | None:
    """Why ``data`` is not UTF-8 text, in words with what to do; None when it is.

    ``where`` follows the byte offset ("of the line"). Used by every reader
    that decodes text: :func:`parse_json` (the JSON formats), :func:`decode_text`
    (WhatsApp) and the JSONL reader, line by line.
    """
    wide = wide_text(data)
    if wide is not None:
        return f"not UTF-8 text: {wide}; {_RESAVE}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return (f"not UTF-8 text: byte {exc.start}{where} (0x{byte:02X}) is not UTF-8 (the "
                f"file may be Latin-1 or Windows-1252, or not text); {_RESAVE}")
    return None


def decode_text(data: bytes, path: Path | str) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); UnreadableExport saying why not."""
    wide = wide_text(data)
    if wide is not None:
        raise UnreadableExport(f"not UTF-8 text: {wide}; {_RESAVE}", path=path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableExport(not_utf8(data) or "not UTF-8 text", path=path) from None
