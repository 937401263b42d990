"""The sealed bundle format: writer, reader, and FORMAT.md, its byte-level spec.

High-level entry points used by the CLI, the exporter and the vault:

- :class:`BundleWriter` and :func:`seal_jsonl` to seal;
- :func:`verify` (no decryption), :class:`Bundle` to open step by step,
  :func:`open_to_jsonl` to verify, decrypt and write canonical JSONL;
- :func:`inspect` to show a header without any key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from vault import bundleids, records
from vault.atomic import AtomicFile
from vault.bundle.layout import DEFAULT_CHUNK, DEFAULT_MAX_PLAINTEXT
from vault.bundle.payload import Blob, Record
from vault.bundle.reader import Bundle, SignerCheck, Verified, inspect, verify
from vault.bundle.writer import BundleWriter, Sealed
from vault.errors import InvalidRecord
from vault.keys import Identity, PublicIdentity

__all__ = ["Blob", "Bundle", "BundleWriter", "DEFAULT_CHUNK", "DEFAULT_MAX_PLAINTEXT",
           "Record", "Sealed", "SignerCheck", "Verified", "file_name", "inspect",
           "open_to_jsonl", "seal_jsonl", "validate_jsonl", "verify"]


_WRITE_BATCH = 1024 * 1024


def file_name(source: str, sequence: int) -> str:
    """``<source>-<sequence:08d>.cvb``, the name bundles travel under."""
    return f"{source}-{sequence:08d}.cvb"


def validate_jsonl(lines: Iterable[bytes], where: str, source: str | None = None
                   ) -> Iterable[tuple[bytes, records.Summary]]:
    """Canonical bytes and summary of each non-blank line; raises on the first bad one.

    One bundle holds each conversation once (the vault refuses one that
    repeats an id), and with ``source`` every record naming a source names
    that one: the bundle's header is what the vault files them under.
    """
    ids = bundleids.IdLedger()
    for lineno, line in enumerate(lines, 1):
        if lineno == 1:
            line = _first_line(line, where)
        if not line.strip():
            continue
        at = f"{where}: line {lineno}"
        data, summary = _canonical_line(line.rstrip(b"\r\n"), at)
        ids.add(summary.conversation_id, lineno)
        named = summary.source
        if source is not None and named is not None and named != source:
            raise InvalidRecord(f"{at}: field 'source': {named[:80]!r}, but the "
                                f"bundle is sealed for source {source!r}")
        yield data, summary
    repeat = ids.repeat()  # the bundle is not finished until this has passed
    if repeat is not None:
        raise InvalidRecord(f"{where}: line {repeat[1]}: field 'conversation_id': the same "
                            f"id as line {repeat[0]}; a bundle holds each conversation once")


def _first_line(line: bytes, where: str) -> bytes:
    """Line 1 as the JSONL reader takes it: a UTF-8 byte order mark (Windows editors
    write one) dropped, a UTF-16 or UTF-32 file named as such, not as bad JSON."""
    from vault.sources.textcodec import not_utf8, wide_text

    if line.startswith(b"\xef\xbb\xbf"):
        return line[3:]
    if wide_text(line) is not None:
        raise InvalidRecord(f"{where}: {not_utf8(line)}")
    return line


def _canonical_line(line: bytes, at: str) -> tuple[bytes, records.Summary]:
    """:func:`records.canonical_line`; a line that is not UTF-8 is said so, with the byte."""
    try:
        return records.canonical_line(line, at)
    except InvalidRecord:
        from vault.sources.textcodec import not_utf8

        why = not_utf8(line, " of the line")
        if why is None:
            raise
        raise InvalidRecord(f"{at}: {why}") from None


def seal_jsonl(input_path: Path, out: Path, signer: Identity,
               recipients: Sequence[PublicIdentity], *, source: str, sequence: int,
               prev_hash: str | None = None, level: int = 3, threads: int = 0,
               chunk_size: int = DEFAULT_CHUNK) -> Sealed:
    """Seal a canonical JSONL file. Any invalid line: nothing is sealed.

    Lines are validated while sealing (one pass); the first invalid line aborts
    the bundle, and its partial output is removed.
    """
    from vault.sources.jsonl import open_lines

    writer = BundleWriter(out, signer, recipients, source=source, sequence=sequence,
                          prev_hash=prev_hash, level=level, threads=threads,
                          chunk_size=chunk_size)
    try:
        for data, summary in validate_jsonl(open_lines(Path(input_path)), str(input_path),
                                            source):
            writer.add_record(data, summary)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def open_to_jsonl(path: Path, identity: Identity, trust: SignerCheck, out: Path, *,
                  role: str = "exporter", max_plaintext: int = DEFAULT_MAX_PLAINTEXT,
                  blobs_dir: Path | None = None,
                  check_meta: Callable[[dict[str, Any]], object] | None = None
                  ) -> tuple[Verified, int]:
    """Verify, decrypt, and write the records as canonical JSONL to ``out``.

    The output appears only when the whole bundle checked out; on any failure
    no output file is left behind. Attachments go to ``blobs_dir`` (named by
    their SHA-256) when given. ``check_meta`` sees the verified meta before
    anything is decrypted, and refuses the bundle by raising.
    """
    count = 0
    with Bundle(path, max_plaintext=max_plaintext) as b:
        entry = b.check_signer(trust, role)
        sha = b.verify_signature()
        if check_meta is not None:
            assert b.meta is not None
            check_meta(b.meta)
        with AtomicFile(out) as fh:
            # records written a megabyte at a time: one write per record cost a
            # quarter of opening a bundle
            lines: list[bytes] = []
            pending = 0
            for item in b.items(identity):
                if isinstance(item, Record):
                    lines.append(item.data)
                    pending += len(item.data)
                    count += 1
                    if pending >= _WRITE_BATCH:
                        fh.write(b"\n".join(lines) + b"\n")
                        lines, pending = [], 0
                elif blobs_dir is not None:
                    _save_blob(item, blobs_dir)
            if lines:
                fh.write(b"\n".join(lines) + b"\n")
            assert b.meta is not None
            declared = b.meta["counts"].get("conversations", count)
            if count != declared:
                raise InvalidRecord(f"header declares {declared} conversations, payload "
                                    f"holds {count}", path=str(path))
        return Verified(b.path, sha, b.size, b.meta, entry, b.prefix), count


def _save_blob(blob: Blob, folder: Path) -> None:
    target = Path(folder) / blob.sha256
    if target.exists():
        return
    with AtomicFile(target) as fh:
        while True:
            part = blob.content.read(1024 * 1024)
            if not part:
                break
            fh.write(part)
