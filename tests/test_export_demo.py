"""The demo's export stage: the real exporter fills the folder standing for the stick."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from export_kit import bundle_files
from vault.demo import Demo
from vault.demo import bundles as bundles_stage
from vault.demo import export as export_stage


def test_export_stage_fills_the_stick_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    bundles_stage.run(demo)

    export_stage.run(demo)

    stick = demo.state["stick"]
    assert stick == tmp_path / "stick"
    assert bundle_files(stick / "chatvault" / "outbox") == ["web-00000001.cvb"]
    text = out.getvalue()
    assert "6 conversations, 18 messages" in text
    assert "0 new bundle(s), 0 written" in text
    assert "export status: OK, 1 bundle(s) waiting" in text
