"""The ``chatvault`` command: a thin Typer application over the modules.

Each command family lives in its own module here and only parses options,
calls a plain function of the package and prints the result. Imports of the
heavy modules happen inside the commands so that start-up stays fast.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from vault.errors import ChatvaultError, EXIT_OTHER

app = typer.Typer(
    name="chatvault",
    help="An air-gapped vault for customer-service conversations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_FAMILIES = [
    # (module, name, help); a module missing here is simply not offered yet
    ("init", None, None),
    ("keys", "keys", "Identities, fingerprints, paper backups and the trust store."),
    ("bundle", "bundle", "Seal, inspect, verify and open bundles by hand."),
    ("sources", "sources", "Platform export readers: list, preview, convert."),
    ("export", "export", "The online exporter: run, status, receipts."),
    ("vaultcmd", "vault", "The offline vault: ingest, daemon, status, rebuild."),
    ("gdpr", None, None),
    ("restore", None, None),
    ("request", "request", "Requests carried to the vault on media, and their answers."),
    ("demo", None, None),
]


def _register() -> None:
    import importlib

    for mod_name, name, help_text in _FAMILIES:
        try:
            mod = importlib.import_module(f"vault.cli.{mod_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vault.cli.{mod_name}":
                continue
            raise
        if name is None:
            mod.register(app)
        else:
            app.add_typer(mod.app, name=name, help=help_text)


_register()


def _setup_logging() -> None:
    level = os.environ.get("CHATVAULT_LOG", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """Console entry point: run the app and map failures to exit codes.

    Typer handles usage errors itself (exit 2); chatvault's own failures
    become one stderr line (plus a JSON object with ``--json``) and their
    exit code; anything else is an internal error (exit 1, traceback only
    with ``CHATVAULT_DEBUG=1``).
    """
    _setup_logging()
    wants_json = "--json" in sys.argv[1:]
    try:
        app(prog_name="chatvault")
    except ChatvaultError as exc:
        _report(exc, wants_json)
        sys.exit(exc.exit_code)
    except OSError as exc:
        from vault.atomic import media_error

        err = media_error(exc, exc.filename or "file")
        _report(err, wants_json)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("chatvault: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if os.environ.get("CHATVAULT_DEBUG") == "1":
            raise
        sys.stderr.write(f"chatvault: internal error: {type(exc).__name__}: {exc} "
                         "(set CHATVAULT_DEBUG=1 for a traceback)\n")
        sys.exit(EXIT_OTHER)


def _report(exc: ChatvaultError, wants_json: bool) -> None:
    if wants_json:
        from vault.cli.common import emit_json

        emit_json(exc.as_dict())
    sys.stderr.write(f"chatvault: {exc}\n")
