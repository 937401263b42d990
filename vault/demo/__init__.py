"""``chatvault demo``: the whole job, end to end, on the built-in sample.

Works in a fresh temporary folder each time (kept with ``--keep``), needs no
home and no network, and runs the stages below in order. Each stage is a
module here with ``run(demo)``; a stage whose module is absent is skipped,
so the demo grows with every capability.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

STAGES = ["bundles", "export", "ingest", "gdpr", "requests", "restore"]


@dataclass
class Demo:
    root: Path
    console: Console
    state: dict[str, Any] = field(default_factory=dict)
    _n: int = 0

    def step(self, title: str) -> None:
        self._n += 1
        self.console.rule(f"[bold]{self._n}. {title}")

    def ok(self, text: str) -> None:
        self.console.print(f"[green]✔[/green] {text}")

    def refused(self, text: str) -> None:
        self.console.print(f"[red]✘[/red] {text}")

    def info(self, text: str) -> None:
        self.console.print(f"  {text}", highlight=False)


def sample_path() -> Path:
    return Path(str(resources.files("vault").joinpath("samples/conversations.jsonl")))


def run(keep: bool = False) -> Path:
    root = Path(tempfile.mkdtemp(prefix="chatvault-demo-"))
    demo = Demo(root, Console(highlight=False))
    demo.console.print(f"[bold]chatvault demo[/bold] in {root}")
    try:
        for name in STAGES:
            try:
                stage = importlib.import_module(f"vault.demo.{name}")
            except ModuleNotFoundError as exc:
                if exc.name == f"vault.demo.{name}":
                    continue
                raise
            stage.run(demo)
        demo.console.rule("[bold green]demo finished")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if keep:
        demo.console.print(f"files kept in {root}")
    else:
        demo.console.print(f"{root} removed; 'scripts/demo --keep' keeps it to look around")
    return root
