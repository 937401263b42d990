"""The ``chatvault`` command: a thin Typer application over the modules.

Each command family lives in its own module here and only parses options,
calls a plain function of the package and prints the result. Imports of the
heavy modules happen inside the commands so that start-up stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="chatvault",
    help="An air-gapped vault for customer-service conversations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from vault import __version__

        print(f"chatvault {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version,
                                       is_eager=True, help="Print the version and exit.")
          ) -> None:
    """An air-gapped vault for customer-service conversations."""


_FAMILIES = [
    # (module, name, help); a module missing here is simply not offered yet
    ("init", None, None),
    ("keys", "keys", "Identities, fingerprints, paper backups and the trust store."),
    ("bundle", "bundle", "Seal, inspect, verify and open bundles by hand."),
    ("sources", "sources", "Platform export readers: formats, preview, convert."),
    ("export", "export", "The online exporter: run, status, receipts."),
    ("vaultcmd", "vault", "The offline vault: ingest, daemon, status, rebuild."),
    ("gdpr", None, None),
    ("erase", None, None),
    ("governance", None, None),
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


def main() -> None:
    """Run the Typer application under the error policy of :func:`vault.quickcli.guarded`.

    The console entry point is :func:`vault.quickcli.main`, which answers a
    plain ``subject find`` without loading Typer and comes here for the rest.
    """
    from vault.quickcli import guarded

    guarded(lambda: app(prog_name="chatvault"))
