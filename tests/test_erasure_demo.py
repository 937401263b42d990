"""The demo's GDPR stage: find Mara, export her package, erase her, replay: still erased."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from vault import store
from vault.demo import Demo
from vault.demo import bundles as bundles_stage
from vault.demo import gdpr as gdpr_stage
from vault.demo import ingest as ingest_stage


def test_gdpr_stage_erases_and_the_replay_keeps_her_erased(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    bundles_stage.run(demo)
    ingest_stage.run(demo)

    gdpr_stage.run(demo)

    text = out.getvalue()
    assert "3 conversation(s), each with why it matched" in text
    assert "2 removed, 1 redacted" in text
    assert "2 conversation(s) left out, 1 stored redacted" in text
    assert "subject search after the replay: 0 conversation(s)" in text
    assert "Mara ([erased e-mail])" in text
    vault = demo.state["vault"].path
    packages = list((tmp_path / "dsar").glob("DSAR-*/manifest.json"))
    assert len(packages) == 1
    data = (vault / store.FILE_NAME).read_bytes()
    assert b"mara.quint@example.org" not in data and b"Quint" not in data
