"""Measuring for the benchmark: run commands, time them, read their peak memory.

Every sample is one run of one or more commands, in a fresh process each:
wall time from ``time.perf_counter``; CPU time (user + system) and peak
resident memory as GNU time reports them for the command, which covers the
process and every descendant it waited for (a shell pipeline's largest
member). GNU time is the launcher because Linux counts a child's memory
from the moment it is forked: a command started straight from this Python
process would be charged this process's own resident size. Without GNU
time, ``os.wait4`` is used and the result says so. A :class:`Row` gathers
the samples of one contender; the figures are the median with min and max.
Nothing here knows about chatvault.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

Step = Union[Sequence[str], str]  # an argv, or a shell command line (pipelines)


class StepFailed(RuntimeError):
    """A measured command exited non-zero: the figure would be meaningless."""


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float
    rss_kib: int


@dataclass
class Row:
    """One contender of one measurement group, and its samples."""

    group: str
    name: str
    kind: str  # chatvault | peer | floor
    command: str
    input_bytes: int | None = None
    messages: int | None = None
    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None
    note: str | None = None
    #: (row name, target ratio or None): speed relative to those rows
    versus: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [s.seconds for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rss_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "name": self.name, "kind": self.kind,
                               "command": self.command, "skipped": self.skipped,
                               "note": self.note, "input_bytes": self.input_bytes,
                               "messages": self.messages}
        if self.samples:
            med = self.median
            out.update({
                "runs": len(self.samples), "seconds_median": med,
                "seconds_min": min(self.seconds), "seconds_max": max(self.seconds),
                "cpu_seconds_median": statistics.median(s.cpu_seconds for s in self.samples),
                "peak_rss_mib": round(self.rss_mib, 1),
                "samples": [vars(s) for s in self.samples]})
            if self.input_bytes:
                out["mb_per_s"] = self.input_bytes / 1e6 / med
            if self.messages:
                out["messages_per_s"] = self.messages / med
        return out


GNU_TIME = "/usr/bin/time"


def run_steps(steps: Sequence[Step], env: dict[str, str], cwd: Path | None = None) -> Sample:
    """Run ``steps`` one after the other; their times add up, memory is the peak."""
    wall = cpu = 0.0
    rss = 0
    launcher = os.path.exists(GNU_TIME)
    for step in steps:
        shell = isinstance(step, str)
        argv = (["bash", "-o", "pipefail", "-c", str(step)] if shell
                else [str(arg) for arg in step])
        with tempfile.NamedTemporaryFile() as usage_file, \
                tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
            full = ([GNU_TIME, "-f", "%U %S %M", "-o", usage_file.name, *argv] if launcher
                    else argv)
            start = time.perf_counter()
            proc = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=cwd)
            _, status, usage = os.wait4(proc.pid, 0)
            wall += time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read()[-2000:].decode("utf-8", "replace")
                shown = step if shell else shlex.join(argv)
                raise StepFailed(f"exit {proc.returncode}: {shown}\n{tail}")
            if launcher:
                user, system, peak = usage_file.read().split()[-3:]
                cpu += float(user) + float(system)
                rss = max(rss, int(peak))
            else:
                cpu += usage.ru_utime + usage.ru_stime
                rss = max(rss, usage.ru_maxrss)
    return Sample(wall, cpu, rss)


def time_calls(call: Callable[[], Any], count: int) -> list[float]:
    """Seconds of each of ``count`` calls made in this process."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def alternate(rows: list[Row], run: Callable[[Row], Sample], runs: int,
              say: Callable[[str], None]) -> None:
    """Sample every row ``runs`` times, contenders interleaved and the order
    reversed every other round, so a machine growing busier or quieter
    weighs on all of them alike."""
    live = [r for r in rows if r.skipped is None]
    for rnd in range(runs):
        for row in (live if rnd % 2 == 0 else list(reversed(live))):
            sample = run(row)
            row.samples.append(sample)
            say(f"  {row.group:8} {row.name:44} run {rnd + 1}/{runs}: "
                f"{sample.seconds:8.3f} s, {sample.rss_kib / 1024:6.1f} MiB")


# -- the machine and the versions ---------------------------------------------------

def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def tool_versions() -> dict[str, str | None]:
    return {"age": _first_line(["age", "--version"]),
            "minisign": _first_line(["minisign", "-v"]),
            "zstd": _first_line(["zstd", "--version"]),
            "rg": _first_line(["rg", "--version"]),
            "tar": _first_line(["tar", "--version"]),
            "hyperfine": _first_line(["hyperfine", "--version"])}


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                   .splitlines() if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    return {"cpu_model": model, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)), "memory_gib": round(mem / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_average": os.getloadavg()}


def python_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("orjson", "msgspec", "zstandard", "PyNaCl", "sqlite-utils", "phonenumbers",
                 "typer"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    import sqlite3

    import zstandard

    out["sqlite"] = sqlite3.sqlite_version
    out["libzstd (python)"] = ".".join(map(str, zstandard.ZSTD_VERSION))
    return out
