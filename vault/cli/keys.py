"""``chatvault keys ...``: show, paper backups, and the trust store."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, emit_json, resolve_home, say

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(
    pubfile: Annotated[Optional[Path], typer.Argument(help="A public key file")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Name, role, fingerprint and creation time of a home's key or a key file."""
    from vault import home as homes
    from vault import keys

    if pubfile is not None:
        pub = keys.load_public(pubfile)
    else:
        pub = homes.Home(resolve_home(home)).public()
    info = pub.describe()
    if as_json:
        emit_json(info)
        return
    for key in ("name", "role", "fingerprint", "created"):
        print(f"{key:12} {info[key]}")


@app.command("export-paper")
def export_paper(
    home: HomeOpt = None,
    passphrase_file: Annotated[Optional[Path], typer.Option("--passphrase-file")] = None,
) -> None:
    """Print a paper backup of the secret key (store it like a spare key)."""
    from vault import home as homes
    from vault import paper

    ident = homes.Home(resolve_home(home)).identity(passphrase_file)
    sys.stdout.write(paper.export_text(ident))


@app.command("import-paper")
def import_paper(
    paper_file: Annotated[Path, typer.Argument(help="The typed-in paper backup ('-' = stdin)")],
    home: HomeOpt = None,
    passphrase_file: Annotated[Optional[Path], typer.Option(
        "--passphrase-file", help="Wrap the restored key with this passphrase")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a secret key from paper into a new home (same fingerprint)."""
    from vault import home as homes
    from vault import keys, paper

    text = paper.read_backup(None if str(paper_file) == "-" else paper_file)
    ident = paper.import_text(text, str(paper_file))
    passphrase = keys.read_passphrase(passphrase_file) if passphrase_file else None
    target = resolve_home(home)
    homes.create(ident.role, target, ident.name, passphrase, identity=ident)
    if as_json:
        emit_json({"home": str(target), **ident.public().describe()})
        return
    say(f"restored {ident.role} key {ident.fingerprint} ({ident.name}) into {target}")


@app.command("trust")
def trust(
    pubfile: Annotated[Path, typer.Argument(help="The other side's public key file")],
    role: Annotated[str, typer.Option(
        "--role", help="exporter, vault, restore, requester or dpo")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trust a key for a role (trusting again with another role adds it)."""
    from vault import home as homes
    from vault import audit_hook, keys, statehook

    h = homes.Home(resolve_home(home))
    store = h.trust()
    text = keys.key_file_text(pubfile)  # a missing file is a file problem (exit 5)
    entry = store.trust(text, role, str(pubfile))
    store.save()
    audit_hook.record(h.path, "key.trust", target=entry.fingerprint, detail={"role": role})
    if h.kind() == "vault":
        statehook.changed(h.path, "trust")  # the trust store travels in the state file
    if as_json:
        emit_json(entry.describe())
        return
    say(f"trusted {entry.fingerprint} ({entry.public.name}) as {', '.join(entry.roles)}")
    if entry.fingerprint == h.public().fingerprint:
        say(f"note: {entry.fingerprint} is this home's own key; the other side's public key "
            "is what is usually trusted here (see 'chatvault keys show')")


@app.command("revoke")
def revoke(
    fingerprint: Annotated[str, typer.Argument()],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a trusted key: everything it signs is refused from now on."""
    from vault import home as homes
    from vault import audit_hook, statehook

    h = homes.Home(resolve_home(home))
    store = h.trust()
    entry = store.revoke(fingerprint)
    store.save()
    audit_hook.record(h.path, "key.revoke", target=entry.fingerprint)
    if h.kind() == "vault":
        statehook.changed(h.path, "trust")
    if as_json:
        emit_json(entry.describe())
        return
    say(f"revoked {entry.fingerprint} ({entry.public.name}) at {entry.revoked_at}")


#: columns the table needs beside the fingerprint for the other four to stay readable
_NARROW = 50


def _when(stamp: object) -> str:
    """A timestamp to the second, that may wrap between date and time (--json: exact)."""
    return re.sub(r"\.\d+", "", str(stamp)).replace("T", " ", 1) if stamp else ""


@app.command("list")
def list_keys(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The trust store: fingerprints, names, roles, revocations."""
    from vault import home as homes

    store = homes.Home(resolve_home(home)).trust()
    entries = sorted(store.entries.values(), key=lambda e: e.added_at)
    rows = [e.describe() for e in entries]
    if as_json:
        emit_json({"keys": rows})
        return
    if not rows:
        say("the trust store is empty")
        return
    from rich.console import Console
    from rich.table import Table

    # fingerprints are compared character by character: never cut or wrapped;
    # the other columns fold, and a terminal too narrow for that gets lines
    console = Console()
    cells = [(e.fingerprint, e.public.name, ", ".join(sorted(e.roles)), _when(e.added_at),
              _when(e.revoked_at)) for e in entries]
    fp_width = max(len(row[0]) for row in cells)
    if console.width < fp_width + _NARROW:
        for fp, name, roles, added, revoked in cells:
            print(f"{fp}  {name}\n  roles {roles}; added {added}"
                  + (f"; revoked {revoked}" if revoked else ""))
        return
    table = Table()
    table.add_column("fingerprint", no_wrap=True, min_width=fp_width)
    for title in ("name", "roles", "added", "revoked"):
        table.add_column(title, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console.print(table)
