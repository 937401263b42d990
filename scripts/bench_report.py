"""The benchmark's results: one JSON document, and the Markdown table people read.

Ratios are speeds relative to a peer measured in the same run on the same
input: ``peer median time / chatvault median time``, so 1.2x means
chatvault took 1/1.2 of the peer's time. A target is met when the ratio
reaches it (memory targets: absolute MiB and growth between two sizes).
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_measure import machine, python_versions, tool_versions

MEMORY_LIMIT_MIB = 150
MEMORY_SPREAD = 0.20
FIND_LIMIT_MS = 1.0


def _git(repo: Path) -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "vault"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{head}{' (vault/ modified)' if dirty else ''}" if head else None


def _versus(rows: dict[str, dict[str, Any]], row: dict[str, Any],
            pairs: list[tuple[str, float | None]]) -> list[dict[str, Any]]:
    out = []
    for peer_name, target in pairs:
        peer = rows.get(peer_name)
        item: dict[str, Any] = {"peer": peer_name, "target": target}
        if peer is None or peer.get("skipped") or "seconds_median" not in peer:
            item["skipped"] = (peer or {}).get("skipped") or "not measured"
        elif "seconds_median" in row:
            ratio = peer["seconds_median"] / row["seconds_median"]
            item["ratio"] = ratio
            if target is not None:
                item["met"] = ratio >= target
        out.append(item)
    return out


def _memory(rows: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    sizes = extra.get("memory_sizes")
    if not sizes:
        return {}
    out: dict[str, Any] = {"sizes": sizes, "limit_mib": MEMORY_LIMIT_MIB,
                           "spread_limit": MEMORY_SPREAD, "steps": {}}
    pairs = {"seal": ("chatvault seal --threads -1", f"seal --threads -1 ({sizes['smaller']})"),
             "open": ("chatvault open", f"open ({sizes['smaller']})"),
             "ingest": ("chatvault vault ingest", f"ingest ({sizes['smaller']})")}
    for step, (big, small) in pairs.items():
        a, b = rows.get(small, {}).get("peak_rss_mib"), rows.get(big, {}).get("peak_rss_mib")
        if a is None or b is None:
            continue
        growth = (b - a) / a
        out["steps"][step] = {sizes["smaller"]: a, sizes["this"]: b,
                              "growth": round(growth, 3),
                              "met": b < MEMORY_LIMIT_MIB and abs(growth) <= MEMORY_SPREAD}
    peaks = [s[sizes["this"]] for s in out["steps"].values()]
    if peaks:
        out["spread_between_steps"] = round((max(peaks) - min(peaks)) / min(peaks), 3)
    return out


def result(b: Any, before: dict[str, Any], started: float) -> dict[str, Any]:
    import vault

    rows = [r.summary() for r in b.rows]
    by_name = {r["name"]: r for r in rows}
    for row, source in zip(rows, b.rows):
        if source.versus:
            row["versus"] = _versus(by_name, row, source.versus)
    finds = b.extra.get("find_in_process", {})
    for item in finds.values():
        item["met"] = item["ms_median"] < FIND_LIMIT_MS
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "scripts/bench " + " ".join(sys.argv[1:]),
        "size": b.size, "runs": b.runs, "groups": list(b.groups),
        "elapsed_seconds": round(time.time() - started, 1),
        "corpus": b.corpus.as_dict(),
        "machine": before, "load_average_end": machine()["load_average"],
        "versions": {"chatvault": vault.__version__, "git": _git(Path(vault.__file__).parents[1]),
                     **python_versions(), "tools": tool_versions()},
        "rows": rows, "find_in_process": finds,
        "memory": _memory(by_name, b.extra), "hyperfine": b.extra.get("hyperfine"),
        "profiles": b.extra.get("profiles"),
        "skipped": [{"name": r["name"], "reason": r["skipped"]} for r in rows if r["skipped"]],
    }


# -- the table ----------------------------------------------------------------------

def _cell(text: str) -> str:
    """Table cell text: a pipe in a name would end the Markdown cell."""
    return text.replace("|", "\\|")


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ratios(row: dict[str, Any]) -> str:
    parts = []
    for v in row.get("versus", []):
        if "ratio" not in v:
            parts.append(f"{v['peer']}: skipped")
            continue
        mark = "" if v.get("target") is None else (" ✓" if v.get("met") else " ✗")
        goal = "" if v.get("target") is None else f" (≥{v['target']:.1f})"
        parts.append(f"{v['ratio']:.2f}x {v['peer']}{goal}{mark}")
    return _cell("; ".join(parts))


def table(res: dict[str, Any]) -> str:
    c, m = res["corpus"], res["machine"]
    lines = [f"chatvault benchmark, {res['date']}, size {res['size']} "
             f"({c['bytes'] / 1e6:,.0f} MB of JSON, {c['conversations']:,} conversations, "
             f"{c['messages']:,} messages), median of {res['runs']} runs",
             f"machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, "
             f"Linux {m['kernel']}, Python {m['python']}; load average "
             f"{m['load_average'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end",
             "", "| group | measurement | median s (min–max) | CPU s | MB/s | msg/s "
             "| peak RSS MiB | speed vs peer |", "|---|---|---|---|---|---|---|---|"]
    finds = [f"| find | subject find in-process ({how}), {f['calls']} calls | "
             f"{f['ms_median']:.3f} ms ({f['ms_min']:.3f}–{f['ms_max']:.3f}) |||| "
             f"| {f['matches']} matches; target < {FIND_LIMIT_MS:g} ms "
             f"{'✓' if f['met'] else '✗'} |"
             for how, f in res.get("find_in_process", {}).items()]
    rows = res["rows"]
    for i, r in enumerate(rows):
        if r.get("skipped"):
            lines.append(f"| {r['group']} | {_cell(r['name'])} | skipped: {r['skipped']} "
                         "||||||")
        else:
            spread = (f"{r['seconds_median']:.3f} ({r['seconds_min']:.3f}–"
                      f"{r['seconds_max']:.3f})")
            lines.append(f"| {r['group']} | {_cell(r['name'])} | {spread} "
                         f"| {r['cpu_seconds_median']:.2f} | {_num(r.get('mb_per_s'), 1)} "
                         f"| {_num(r.get('messages_per_s'))} | {r['peak_rss_mib']:.0f} "
                         f"| {_ratios(r)} |")
        if r["group"] == "find" and (i + 1 == len(rows) or rows[i + 1]["group"] != "find"):
            lines += finds
    hf = res.get("hyperfine") or {}
    if hf and "skipped" not in hf:
        lines.append("\nhyperfine cross-check of the one-shot commands (3 warm-up runs): "
                     + "; ".join(f"{name} {h['median_s'] * 1e3:.1f} ms median of {h['runs']}"
                                 for name, h in hf.items()))
    elif hf:
        lines.append(f"\nhyperfine cross-check skipped: {hf['skipped']}")
    mem = res.get("memory") or {}
    if mem.get("steps"):
        small, big = mem["sizes"]["smaller"], mem["sizes"]["this"]
        lines += ["", f"| peak RSS MiB | {small} | {big} | growth | < {mem['limit_mib']} MiB, "
                      f"±{mem['spread_limit']:.0%} |", "|---|---|---|---|---|"]
        for step, s in mem["steps"].items():
            lines.append(f"| {step} | {s[small]:.0f} | {s[big]:.0f} | {s['growth']:+.0%} | "
                         f"{'✓' if s['met'] else '✗'} |")
        if "spread_between_steps" in mem:
            lines.append(f"\nseal, open and ingest at {big}: the largest peak is "
                         f"{mem['spread_between_steps']:.0%} above the smallest.")
    if res.get("skipped"):
        lines.append("\nskipped: " + "; ".join(f"{s['name']} ({s['reason']})"
                                               for s in res["skipped"]))
    return "\n".join(lines) + "\n"
