"""The demo's requests stage: a restore and a DSAR request answered and opened online."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from vault import answers, media
from vault.demo import Demo
from vault.demo import bundles as bundles_stage
from vault.demo import ingest as ingest_stage
from vault.demo import requests as requests_stage


def test_requests_stage_answers_and_opens_both(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    bundles_stage.run(demo)
    ingest_stage.run(demo)

    requests_stage.run(demo)

    text = out.getvalue()
    assert "the e-mail address is on the stick in clear: False" in text
    assert "restore set" in text and "DSAR case" in text
    assert "refused (replay), nothing done" in text
    assert "IT staff: restore done, opened" in text and "DPO: dsar done, opened" in text
    assert "6 conversations restored" in text and "conversations web-1002;" in text
    assert "requests still waiting: 0" in text
    stick = Path(demo.state["stick"])
    assert not list((stick / media.ROOT / media.REQUESTS).iterdir())
    assert answers.status(tmp_path / "dpo", every=True)["requests"][0]["state"] == "answered"
