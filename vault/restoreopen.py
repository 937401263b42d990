"""Opening restore bundles on the online side: verify every part, then write it out.

Every part given is checked first (trust role ``vault``, signature, kind
``restore``, a well-formed ``restore_id`` / ``part`` / ``parts``), and the
parts of each restore set must chain (``prev_hash``) and be complete unless
``partial`` is asked for. Only then is anything decrypted. Records must be
canonical and valid; they are written to ``OUT/<source>.jsonl`` byte for
byte as the vault sealed them (which is what the exporter sealed),
attachments to ``OUT/attachments/<sha256>`` (named by their verified hash,
never by anything in the data), and with ``native`` also to
``OUT/native/<source>/`` in the platform's own format when its reader can
write (:mod:`vault.sources`). Everything is written into a temporary folder
inside ``OUT`` and renamed into place only when every part checked out, so
a failure leaves nothing behind. Existing output is never overwritten.

Creating restore bundles (on the vault) is :mod:`vault.restore`.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from vault import atomic, bundle, canonical, chain, records
from vault.bundle import Record
from vault.errors import InputRejected, InvalidRecord, MalformedHeader, UsageError
from vault.keys import Identity

log = logging.getLogger(__name__)

KIND = "restore"
_READ = 1024 * 1024

@dataclass(frozen=True)
class Part:
    """One verified part of a restore set (signature checked, nothing decrypted yet)."""

    path: Path
    sha256: str
    meta: dict[str, Any]

    @property
    def restore_id(self) -> str:
        return str(self.meta["context"]["restore_id"])

    @property
    def number(self) -> int:
        return int(self.meta["context"]["part"])

    @property
    def of(self) -> int:
        return int(self.meta["context"]["parts"])


def check_part(path: Path, trust: Any) -> Part:
    """Structure, trust (role ``vault``), signature and header of one restore part."""
    verified = bundle.verify(path, trust, "vault")
    meta = verified.meta
    ctx = meta.get("context")
    if meta["kind"] != KIND:
        raise MalformedHeader(f"is a {meta['kind']!r} bundle, not a restore bundle", path=path)
    if (not isinstance(ctx, dict) or not isinstance(ctx.get("restore_id"), str)
            or not all(isinstance(ctx.get(k), int) and not isinstance(ctx.get(k), bool)
                       for k in ("part", "parts"))
            or not 1 <= ctx["part"] <= ctx["parts"] or ctx["part"] != meta["sequence"]):
        raise MalformedHeader("restore header lacks a valid restore_id / part / parts",
                              path=path)
    if not chain.source_name_ok(meta["source"]):
        raise MalformedHeader("source name is not [A-Za-z0-9._-]", path=path)
    return Part(Path(path), verified.sha256, meta)


def complete_sets(parts: list[Part], partial: bool = False) -> tuple[list[Part], list[str]]:
    """Parts in order, duplicates dropped; refuses a broken or (unless partial) gappy set."""
    by_key: dict[tuple[str, int], Part] = {}
    for p in parts:
        seen = by_key.setdefault((p.restore_id, p.number), p)
        if seen.sha256 != p.sha256:
            raise InputRejected(f"two different files claim part {p.number} of restore "
                                f"{p.restore_id[:16]}", path=p.path)
    ordered = [by_key[k] for k in sorted(by_key)]
    missing: list[str] = []
    for p in ordered:
        before = by_key.get((p.restore_id, p.number - 1))
        if p.number == 1 and p.meta.get("prev_hash") is not None or (
                before is not None and p.meta.get("prev_hash") != before.sha256):
            raise InputRejected(f"part {p.number} does not follow the part before it in "
                                f"restore {p.restore_id[:16]}", path=p.path)
    for rid in sorted({p.restore_id for p in ordered}):
        total = max(p.of for p in ordered if p.restore_id == rid)
        missing += [f"{rid[:16]} part {n} of {total}" for n in range(1, total + 1)
                    if (rid, n) not in by_key]
    if missing and not partial:
        raise InputRejected(f"restore set incomplete, missing {', '.join(missing)}; bring "
                            "every part (or open what is here with --partial)")
    return ordered, missing


@dataclass
class Opened:
    out: Path
    restore_ids: list[str]
    parts: int
    missing: list[str]
    sources: dict[str, dict[str, Any]]
    blobs: int
    hashes: dict[tuple[str, str], str] = field(repr=False)

    @property
    def conversations(self) -> int:
        return len(self.hashes)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "restore_ids": self.restore_ids, "parts": self.parts,
                "missing": self.missing, "sources": self.sources, "blobs": self.blobs,
                "conversations": self.conversations}


def open_bundles(paths: Sequence[Path], identity: Identity, trust: Any, out: Path, *,
                 native: bool = False, partial: bool = False) -> Opened:
    """Verify every part, then decrypt and write the conversations (see module doc)."""
    if not paths:
        raise UsageError("give at least one restore bundle")
    ordered, missing = complete_sets([check_part(Path(p), trust) for p in paths], partial)
    out = Path(out)
    with atomic.output_dir(out):
        opened = _open_into(ordered, missing, identity, trust, out, native)
    log.info("opened %d restore part(s): %d conversations, %d attachments", opened.parts,
             opened.conversations, opened.blobs)
    return opened


def _open_into(ordered: list[Part], missing: list[str], identity: Identity, trust: Any, out: Path,
               native: bool) -> Opened:
    sources = sorted({p.meta["source"] for p in ordered})
    clashes = [out / f"{name}.jsonl" for name in sources]
    clashes += [out / "native" / name for name in sources] if native else []
    for clash in clashes:
        if os.path.lexists(clash):  # a dangling link too: the rename would replace it
            raise UsageError(f"{clash} already exists; open into an empty folder")
    work = out / f".restore-open{atomic.TMP_MARK}{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    atomic.private_dir(work / "attachments")
    try:
        opened = _decrypt_all(ordered, identity, trust, work)
        opened.out, opened.missing = out, missing
        if native:
            _write_native(work, opened)
        # plaintext: owner only, whatever the umask and the native writers did
        atomic.make_private(work)
        _move_into(work, out, sources, native)
    except OSError as exc:
        # a write into the work folder names no file: the folder asked for is the one
        raise atomic.media_error(exc, exc.filename or out) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return opened


def _decrypt_all(parts: list[Part], identity: Identity, trust: Any, work: Path) -> Opened:
    """Decrypt every part into ``work``; the hash of each conversation is kept.

    Those hashes (about 300 bytes a conversation) catch two versions of one
    conversation across parts and are what a drill compares with the store:
    the one thing here that grows with the restore set (README, Performance).
    """
    hashes: dict[tuple[str, str], str] = {}
    sources: dict[str, dict[str, Any]] = {}
    handles: dict[str, Any] = {}
    blobs = 0
    try:
        for p in parts:
            src = p.meta["source"]
            info = sources.setdefault(src, {"conversations": 0, "jsonl": f"{src}.jsonl",
                                            "format": p.meta["context"].get("format"),
                                            "native": None})
            fh = handles.get(src) or handles.setdefault(src, open(work / f"{src}.jsonl", "wb"))
            n, b = _one_part(p, identity, trust, fh, work / "attachments", hashes)
            info["conversations"] += n
            blobs += b
        for fh in handles.values():
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        for fh in handles.values():
            fh.close()
    return Opened(work, sorted({p.restore_id for p in parts}), len(parts), [], sources, blobs,
                  hashes)


def _one_part(p: Part, identity: Identity, trust: Any, fh: Any, blob_dir: Path,
              hashes: dict[tuple[str, str], str]) -> tuple[int, int]:
    src, n, blobs = p.meta["source"], 0, 0
    with bundle.Bundle(p.path) as b:
        b.check_signer(trust, "vault")
        if b.verify_signature() != p.sha256:
            raise InputRejected("file changed while the restore set was being opened",
                                path=p.path)
        for item in b.items(identity):
            if isinstance(item, Record):
                n += 1
                line, summary = records.canonical_line(item.data, f"{p.path.name}: record {n}")
                if line != item.data:
                    raise InvalidRecord(f"{p.path.name}: record {n} is not in canonical form")
                key = (src, summary.conversation_id)
                sha = records.content_hash(line)
                prior = hashes.get(key)
                if prior is not None and prior != sha:
                    raise InputRejected(f"two versions of one conversation of {src} in these "
                                        "restore sets; open them into separate folders",
                                        path=p.path)
                if prior is None:
                    hashes[key] = sha
                    fh.write(line + b"\n")
            else:
                blobs += 1
                target = blob_dir / item.sha256
                if not target.exists():
                    with atomic.AtomicFile(target, 0o600) as out:
                        shutil.copyfileobj(item.content, out, _READ)
    counts = p.meta["counts"]
    if (counts.get("conversations"), counts.get("blobs")) != (n, blobs):
        raise InvalidRecord(f"header declares {counts.get('conversations')} conversations and "
                            f"{counts.get('blobs')} attachments, payload holds {n} and {blobs}",
                            path=str(p.path))
    return n, blobs


def _write_native(work: Path, opened: Opened) -> None:
    from vault import sources as readers

    for src, info in opened.sources.items():
        fmt = info["format"]
        mod = readers.module(fmt) if fmt in readers.FORMATS else None
        if mod is None or not hasattr(mod, "write"):
            info["native"] = None
            continue
        folder = work / "native" / src
        folder.mkdir(parents=True)
        mod.write(_read_jsonl(work / f"{src}.jsonl"), folder)
        info["native"] = f"native/{src}"


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for line in fh:
            yield canonical.loads(line)


def _move_into(work: Path, out: Path, sources: list[str], native: bool) -> None:
    """Rename the finished files into ``out`` (same file system: atomic each)."""
    for src in sources:
        os.replace(work / f"{src}.jsonl", out / f"{src}.jsonl")
    if native and (work / "native").is_dir():
        atomic.private_dir(out / "native")
        for folder in sorted((work / "native").iterdir()):
            os.replace(folder, out / "native" / folder.name)
    found = sorted((work / "attachments").iterdir())
    if found:
        atomic.private_dir(out / "attachments")
        for blob in found:
            atomic.check_target(out / "attachments" / blob.name)
            os.replace(blob, out / "attachments" / blob.name)
    atomic.fsync_dir(out)
