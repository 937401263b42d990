"""``chatvault demo``."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(keep: Annotated[bool, typer.Option("--keep", help="Keep the demo folder")] = False,
             ) -> None:
        """Run the whole job end to end on the built-in sample, in a temporary folder."""
        from vault import demo as demo_mod

        demo_mod.run(keep=keep)
