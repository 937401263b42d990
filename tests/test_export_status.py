"""``export status``: thresholds, exit codes, and the Prometheus textfile."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from export_kit import make_site
from vault import exportconfig, exportstatus, timestamps
from vault.exportstate import ExportState


def _at(site, hours: float) -> dict:
    """The status as it will look ``hours`` after the last bundle was sealed."""
    with ExportState.open(site.exporter.path) as state:
        base = timestamps.parse(state.bundles()[-1].created_at)
        return exportstatus.gather(site.exporter.path, exportconfig.load(site.exporter.path),
                                   state, now=base + timedelta(hours=hours))


def _messages(report: dict, level: str) -> list[str]:
    return [a["message"] for a in report["alerts"] if a["level"] == level]


def test_no_run_yet_is_a_warning(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    assert res.code == 1
    assert res.json()["alerts"] == [{"level": "WARNING", "message": "no export run yet"}]


def test_thresholds_for_unacknowledged_bundles_and_overdue_exports(tmp_path: Path,
                                                                   cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    res = cli("export", "status", "--home", site.exporter.path, "--json")
    assert res.code == 0 and res.json()["status"] == "OK"

    # defaults: overdue after 26 h, unacknowledged WARNING at 3 days, CRITICAL at 8
    r = _at(site, 20)
    assert r["exit_code"] == 0 and r["unacknowledged"][0]["age_days"] < 1
    r = _at(site, 27)
    assert r["exit_code"] == 2
    assert any("no successful export for 27 h" in m for m in _messages(r, "CRITICAL"))
    r = _at(site, 24 * 4)
    assert any("web-00000001.cvb unacknowledged for 4.0 days" in m
               for m in _messages(r, "WARNING"))
    r = _at(site, 24 * 9)
    assert any("web-00000001.cvb unacknowledged for 9.0 days" in m
               for m in _messages(r, "CRITICAL"))


def test_thresholds_come_from_the_config(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    cfg = site.exporter.config
    cfg.write_text(cfg.read_text().replace("export_overdue_hours = 26",
                                           "export_overdue_hours = 100")
                   .replace("unacknowledged_warning_days = 3", "unacknowledged_warning_days = 1"))
    assert cli("export", "run", *site.args()).code == 0
    r = _at(site, 30)
    assert r["exit_code"] == 1 and _messages(r, "CRITICAL") == []
    assert any("unacknowledged for 1.2 days" in m for m in _messages(r, "WARNING"))


def test_failed_source_and_missing_local_copy(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    site.source.write_bytes(b"garbage\n")
    assert cli("export", "run", *site.args()).code == 3
    (site.outbox / "web-00000001.cvb").unlink()

    res = cli("export", "status", "--home", site.exporter.path, "--json")

    report = res.json()
    assert res.code == 2
    src = report["sources"][0]
    assert src["last_exit_code"] == 3 and src["last_success_at"] is not None
    assert any("last run ended with exit code 3" in m for m in _messages(report, "WARNING"))
    assert any("local copy missing" in m for m in _messages(report, "CRITICAL"))


def test_prometheus_textfile(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path)
    assert cli("export", "run", *site.args()).code == 0
    prom = tmp_path / "textfile" / "chatvault_export.prom"
    prom.parent.mkdir()

    res = cli("export", "status", "--home", site.exporter.path, "--prometheus", prom)

    assert res.code == 0 and res.out.startswith("CHATVAULT EXPORT OK")
    text = prom.read_text()
    assert [p.name for p in prom.parent.iterdir()] == ["chatvault_export.prom"]
    samples = dict(re.findall(r"^(chatvault_\S+) (\S+)$", text, re.MULTILINE))
    assert samples["chatvault_export_status"] == "0"
    assert samples['chatvault_export_last_sequence{source="web"}'] == "1"
    assert samples['chatvault_export_unacknowledged_bundles{source="web"}'] == "1"
    assert samples['chatvault_export_last_exit_code{source="web"}'] == "0"
    ts = float(samples['chatvault_export_last_success_timestamp_seconds{source="web"}'])
    assert ts > 1.6e9 and ts != round(ts, -4)  # full precision, not 1.7e+09
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or re.match(r"^chatvault_\w+", line)
    assert text.count("# TYPE chatvault_export_last_sequence gauge") == 1
