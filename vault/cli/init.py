"""``chatvault init exporter|vault|requester H --name NAME [--passphrase-file F]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vault.cli.common import JsonOpt, emit_json, say


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        kind: Annotated[str, typer.Argument(help="exporter, vault or requester (a DPO)")],
        home: Annotated[Path, typer.Argument(help="The new home folder")],
        name: Annotated[str, typer.Option("--name", help="A name people recognise")],
        passphrase_file: Annotated[Optional[Path], typer.Option(
            "--passphrase-file", help="Wrap the secret key with this passphrase")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a home: config template, identity, empty trust store."""
        from vault import home as homes
        from vault import keys

        passphrase = keys.read_passphrase(passphrase_file) if passphrase_file else None
        created = homes.create(kind, home, name, passphrase)
        pub = created.public()
        if as_json:
            emit_json({"home": str(home), **pub.describe()})
            return
        say(f"created {kind} home {home}")
        say(f"  name         {pub.name}")
        say(f"  fingerprint  {pub.fingerprint}")
        say(f"  public key   {created.public_key}  (give this file to the other side)")
        say(f"  config       {created.config}")
