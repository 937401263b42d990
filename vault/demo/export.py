"""Demo stage: the real exporter seals the sample onto a folder standing for the stick."""

from __future__ import annotations

from vault import exporter, exportstatus
from vault.demo import Demo, sample_path
from vault.exportconfig import load
from vault.exportstate import ExportState
from vault.home import Home

SOURCE = "web"


def _configure(exp: Home, vault_home: Home, stick: str) -> None:
    text = exp.config.read_text(encoding="utf-8")
    text += f"""
[[recipients]]
public_key = "{vault_home.public_key}"

[[sources]]
name = "{SOURCE}"
format = "jsonl"
path = "{sample_path()}"
timezone = "Europe/London"
phone_region = "GB"
"""
    # a folder stands for the stick: taken as a medium although no stick is mounted there
    text = text.replace('path = "/media/chatvault"', f'path = "{stick}"')
    exp.config.write_text(text.replace("mounted_only = true", "mounted_only = false"),
                          encoding="utf-8")


def run(demo: Demo) -> None:
    exp: Home = demo.state["exporter"]
    vlt: Home = demo.state["vault"]
    stick = demo.root / "stick"
    stick.mkdir()

    demo.step("Export run: the sample, sealed for the vault, onto the stick")
    _configure(exp, vlt, str(stick))
    demo.info(f"config: one recipient (the vault), source {SOURCE!r} (jsonl), media {stick}")
    report = exporter.run(exp.path)
    t = report.totals()
    for src in report.sources:
        for b in src.bundles:
            demo.ok(f"{b['file']}: {b['conversations']} conversations, {b['messages']} "
                    f"messages, {b['size']} bytes, sequence {b['sequence']}")
    assert report.media is not None
    demo.ok(f"written to {stick}/chatvault/outbox, read back and verified: "
            f"{len(report.media.written)} bundle(s); exit code {report.exit_code}")
    demo.info(f"summary: {t['conversations']} conversations, {t['messages']} messages, "
              f"{t['bytes_in']} bytes in, {t['bytes_sealed']} bytes sealed")

    demo.step("A second run with no new data writes nothing")
    again = exporter.run(exp.path).totals()
    demo.ok(f"{again['bundles']} new bundle(s), {again['written_to_media']} written: "
            "unchanged conversations are never sealed twice")

    with ExportState.open(exp.path) as state:
        status = exportstatus.gather(exp.path, load(exp.path), state)
    demo.info(f"export status: {status['status']}, {len(status['unacknowledged'])} bundle(s) "
              "waiting for the vault's receipt")
    demo.state["stick"] = stick
    demo.state["export_source"] = SOURCE
