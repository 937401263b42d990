"""``chatvault bundle ...``: the low-level commands over the bundle format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault.cli.common import (HomeOpt, JsonOpt, emit_json, refuse_same_file, resolve_home,
                              say)

app = typer.Typer(no_args_is_help=True)

RoleOpt = Annotated[str, typer.Option(
    "--role", help="Role the signer must be trusted for (exporter; vault for restore bundles)")]


@app.command("seal")
def seal(
    input_file: Annotated[Path, typer.Argument(help="Canonical JSONL, one conversation a line")],
    to: Annotated[list[Path], typer.Option("--to", help="Recipient public key file (repeat)")],
    source: Annotated[str, typer.Option("--source", help="Source id for the header")],
    seq: Annotated[int, typer.Option("--seq", min=1, help="Sequence number in the source")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Bundle file to write")],
    prev: Annotated[Optional[str],
                    typer.Option("--prev", help="SHA-256 of the previous bundle")] = None,
    level: Annotated[int, typer.Option("--level", min=1, max=22)] = 3,
    threads: Annotated[int, typer.Option("--threads", help="zstd workers; -1 = all cores")] = 0,
    home: HomeOpt = None,
    passphrase_file: Annotated[Optional[Path], typer.Option("--passphrase-file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Seal a JSONL file into a bundle signed by this home's key."""
    from vault import bundle, chain, keys
    from vault import home as homes
    from vault.errors import UsageError

    if prev is not None and (len(prev) != 64 or any(c not in "0123456789abcdef" for c in prev)):
        raise UsageError("--prev must be a SHA-256 in lower-case hex")
    refuse_same_file(input_file, out)
    if not chain.source_name_ok(source):
        raise UsageError(f"--source {source!r}: not a source name (letters, digits, '.', '_' "
                         "and '-', at most 128, starting with a letter or digit); a vault "
                         "would refuse the bundle")
    h = homes.Home(resolve_home(home))
    ident = h.identity(passphrase_file)
    recipients = [keys.load_public(p) for p in to]
    _refuse_revoked(h.trust(), recipients, to)
    sealed = bundle.seal_jsonl(input_file, out, ident, recipients, source=source,
                               sequence=seq, prev_hash=prev, level=level, threads=threads)
    info = {"path": str(sealed.path), "sha256": sealed.sha256, "size": sealed.size,
            "counts": sealed.meta["counts"], "bundle_id": sealed.meta["bundle_id"]}
    if as_json:
        emit_json(info)
        return
    c = sealed.meta["counts"]
    say(f"sealed {c['conversations']} conversations, {c['messages']} messages into "
        f"{sealed.path} ({sealed.size} bytes)")
    say(f"sha256 {sealed.sha256}")


@app.command("inspect")
def inspect(
    bundle_file: Annotated[Path, typer.Argument()],
    as_json: JsonOpt = False,
) -> None:
    """Show the header as the file claims it (nothing verified, no key needed)."""
    from vault import bundle

    info = bundle.inspect(bundle_file)
    if as_json:
        emit_json(info)
        return
    meta = info["meta"]
    print(f"file          {info['path']} ({info['size']} bytes, format v{info['version']})")
    for key in ("kind", "source", "sequence", "bundle_id", "prev_hash", "created_at",
                "signer", "software"):
        shown = _shown(meta.get(key))
        if key == "prev_hash" and shown == "-":
            shown = "none (the first of its chain)"
        print(f"{key:13} {shown}")
    counts = meta.get("counts")
    print("counts        " + (", ".join(f"{_shown(v)} {_shown(k)}" for k, v in counts.items())
                              if isinstance(counts, dict) else _shown(counts)))
    window = meta.get("window")
    print("window        " + (f"{_shown(window.get('first'))} to {_shown(window.get('last'))}"
                              if isinstance(window, dict) else _shown(window)))
    print(f"payload       {info['plaintext_size']} bytes, {info['payload_size']} compressed, "
          f"{info['chunks']} chunk(s)")
    print(f"recipients    {_shown(meta.get('recipients'))}")
    print("verified      no (use 'chatvault bundle verify --home H')")


def _shown(value: Any) -> str:
    """A header value in words: '-' for none, lists joined; never Python's repr."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_shown(v) for v in value) or "-"
    text = str(value)
    return text if text.isprintable() else repr(text)  # unverified: no terminal escapes


@app.command("verify")
def verify(
    bundle_file: Annotated[Path, typer.Argument()],
    home: HomeOpt = None,
    role: RoleOpt = "exporter",
    as_json: JsonOpt = False,
) -> None:
    """Check structure, signer trust and signature. Decrypts nothing."""
    from vault import bundle
    from vault import home as homes
    from vault.trust import OwnKeyToo

    h = homes.Home(resolve_home(home))
    # an exporter checking a bundle it sealed itself (on a stick, say) trusts its own key
    v = bundle.verify(bundle_file, OwnKeyToo(h.trust(), h.public()), role)
    _check_chain_fields(v.meta, bundle_file)
    info = {"path": str(v.path), "sha256": v.sha256, "size": v.size, "verified": True,
            "signer": v.signer.fingerprint, "signer_name": v.signer.public.name,
            "source": v.meta["source"], "sequence": v.meta["sequence"],
            "prev_hash": v.meta.get("prev_hash"), "kind": v.meta["kind"],
            "counts": v.meta["counts"]}
    if as_json:
        emit_json(info)
        return
    say(f"{bundle_file}: OK, signed by {info['signer']} ({info['signer_name']}), "
        f"{info['source']} #{info['sequence']}, sha256 {v.sha256}")


@app.command("open")
def open_(
    bundle_file: Annotated[Path, typer.Argument()],
    out: Annotated[Path, typer.Option("-o", "--out", help="Canonical JSONL to write")],
    home: HomeOpt = None,
    role: RoleOpt = "exporter",
    blobs: Annotated[Optional[Path], typer.Option(
        "--blobs", help="Folder for attachments")] = None,
    passphrase_file: Annotated[Optional[Path], typer.Option("--passphrase-file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, decrypt with this home's key, write canonical JSONL."""
    from vault import bundle
    from vault import home as homes

    refuse_same_file(bundle_file, out)
    h = homes.Home(resolve_home(home))
    v, count = bundle.open_to_jsonl(bundle_file, h.identity(passphrase_file), h.trust(), out,
                                    role=role, blobs_dir=blobs,
                                    check_meta=lambda meta: _check_chain_fields(meta, bundle_file))
    if as_json:
        emit_json({"path": str(bundle_file), "out": str(out), "conversations": count,
                   "sha256": v.sha256, "signer": v.signer.fingerprint})
        return
    say(f"opened {bundle_file}: {count} conversations written to {out}")


def _refuse_revoked(trust: Any, recipients: list[Any], files: list[Path]) -> None:
    """A --to key need not be trusted here, but one revoked here is never sealed to."""
    from vault.errors import PolicyRefused

    for pub, path in zip(recipients, files):
        entry = trust.entries.get(pub.fingerprint)
        if entry is not None and entry.revoked_at:
            raise PolicyRefused(f"{pub.fingerprint} ({pub.name}) was revoked in this home's "
                                f"trust store at {entry.revoked_at}; nothing is sealed to a "
                                "revoked key", path=path)


def _check_chain_fields(meta: dict[str, Any], bundle_file: Path) -> None:
    """An export bundle's source, sequence, prev_hash and time, as a vault checks them.

    Without this, verify said OK (and open wrote the records) for a signed
    bundle the vault quarantines on ingest: a source named ``../x``, say.
    """
    from vault import chain

    if meta.get("kind") == "export":
        chain.checked_meta(meta, str(bundle_file))
