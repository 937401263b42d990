"""The demo's restore stage: a restore set opened online, a rebuild, and a passing drill."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from vault import drillreports
from vault.demo import Demo
from vault.demo import bundles as bundles_stage
from vault.demo import ingest as ingest_stage
from vault.demo import restore as restore_stage


def test_restore_stage_ends_with_a_passing_drill_report(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    bundles_stage.run(demo)
    ingest_stage.run(demo)

    restore_stage.run(demo)

    text = out.getvalue()
    assert "source sample: 6 conversations" in text
    assert "every conversation byte-identical to what the vault holds: True" in text
    assert "equal: True" in text
    assert "recovery time" in text and "PASSED" in text
    assert text.rstrip().splitlines()[-1].count("PASSED") == 1  # the drill report ends it
    [report] = drillreports.reports(demo.state["vault"].path)
    assert report["valid"] and report["passed"] and report["records"] == 6


def test_the_demo_ends_with_the_restore_drill() -> None:
    """Every other stage (requests included) runs before it: the drill report is the last word."""
    from vault import demo as demo_pkg

    assert demo_pkg.STAGES[-1] == "restore"
