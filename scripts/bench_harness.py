"""The benchmark: chatvault side by side with what an administrator would do instead.

Run it through ``scripts/bench`` (which sets up the environment and the peer
tools); ``python scripts/bench_harness.py --help`` lists the options. For a
generated corpus (:mod:`bench_corpus`) of the chosen size it measures, each
figure the median of ``--runs`` runs with min and max, chatvault and its
peers interleaved in the same run:

========  ==============================================================
seal      ``bundle seal`` (one zstd worker / one per core) vs tar | zstd
          -T1 / -T2 | age, plus minisign -S
open      ``bundle verify`` + ``bundle open`` vs minisign -V + age -d |
          zstd -d | tar -x
export    ``export run`` of a canonical-JSONL and of a Slack source
ingest    ``vault ingest`` into an empty store (index, mentions, upserts)
          vs sqlite-utils insert --nl + enable-fts, and a bare executemany
find      ``subject find`` by e-mail and by phone, in-process and as a
          command, vs ``rg -F`` over the plaintext JSONL
restore   ``restore create`` + ``restore open`` of the source
memory    peak RSS of seal, open and ingest at this size and the next
          smaller one
========  ==============================================================

What each group runs is in :mod:`bench_groups`, sampling and the machine's
details in :mod:`bench_measure`, the JSON and the table in
:mod:`bench_report`; this module sets up, samples and reports. A peer tool
that is missing is reported as skipped, with the reason, in the table and
in the JSON. The table goes to stdout (Markdown, as the README shows it);
progress to stderr; everything, with the machine and the versions, to
``--json``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_corpus  # noqa: E402
import bench_report  # noqa: E402
from bench_groups import BUILDERS, GROUPS, PEERS, REPO, Bench, fresh, say  # noqa: E402
from bench_measure import Row, StepFailed, alternate, machine, run_steps  # noqa: E402


# -- set-up -----------------------------------------------------------------------

def prepare(b: Bench) -> None:
    """Homes that trust each other, peer keys, compiled bytecode."""
    b.work.mkdir(parents=True, exist_ok=True)
    # an installed package has its bytecode compiled; so must the checkout
    b.setup_cmd([sys.executable, "-m", "compileall", "-q", str(REPO / "vault")])
    b.setup_cmd(b.chatvault("init", "exporter", b.path("exporter"), "--name", "bench-exporter"))
    b.setup_cmd(b.chatvault("init", "vault", b.path("vault0"), "--name", "bench-vault"))
    b.setup_cmd(b.chatvault("keys", "trust", b.path("vault0/keys/public.key"), "--role",
                            "vault", "--home", b.path("exporter")))
    b.setup_cmd(b.chatvault("keys", "trust", b.path("exporter/keys/public.key"), "--role",
                            "exporter", "--home", b.path("vault0")))
    if b.tools.get("age-keygen"):
        b.setup_cmd(["age-keygen", "-o", b.path("age.key")])
        key = b.path("age.key").read_text()
        b.extra["age_recipient"] = next(line.split(": ", 1)[1] for line in key.splitlines()
                                        if line.startswith("# public key: "))
    if b.tools.get("minisign"):
        b.setup_cmd(["minisign", "-G", "-W", "-f", "-p", b.path("ms.pub"), "-s",
                     b.path("ms.key")])


def hyperfine_check(b: Bench) -> None:
    """The one-shot find commands timed again by hyperfine (optional cross-check)."""
    if not b.tools.get("hyperfine"):
        b.extra["hyperfine"] = {"skipped": "hyperfine not installed"}
        return
    names = [r.name for r in b.rows if r.group == "find" and r.name in b.plans]
    commands = [shlex.join(b.plans[n].steps()[0]) for n in names]
    report = b.path("hyperfine.json")
    run_steps([["hyperfine", "-N", "--warmup", "3", "--runs", "30", "--export-json",
                str(report), *commands]], b.env, b.work)
    found = orjson.loads(report.read_bytes())["results"]
    b.extra["hyperfine"] = {name: {"median_s": r["median"], "min_s": r["min"],
                                   "max_s": r["max"], "runs": len(r["times"])}
                            for name, r in zip(names, found)}


def _top(stacks: Path, count: int = 8) -> dict[str, Any]:
    """The frames a py-spy raw profile spends most time in (self, and inclusive in vault/)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames, weight = stack.split(";"), int(n)
        total += weight
        own[frames[-1]] = own.get(frames[-1], 0) + weight
        for frame in set(frames):
            if "vault/" in frame:
                inclusive[frame] = inclusive.get(frame, 0) + weight

    def share(counts: dict[str, int]) -> list[list[Any]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:count]
        return [[frame, round(n / max(total, 1), 3)] for frame, n in best]
    return {"samples": total, "self": share(own), "inclusive_vault": share(inclusive)}


def profile(b: Bench, row: Row) -> None:
    """One more run of a chatvault row under py-spy; raw stacks kept in bench-out/profiles."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if spy is None:
        b.extra.setdefault("profiles", {})[row.name] = {"skipped": "py-spy not installed"}
        return
    plan = b.plans[row.name]
    plan.before()
    found = []
    for i, step in enumerate(plan.steps()):
        if isinstance(step, str):
            run_steps([step], b.env, b.work)
            continue
        slug = "".join(c if c.isalnum() else "-" for c in row.name).strip("-")
        stacks = b.out / "profiles" / f"{b.size}-{slug}-{i}.txt"
        stacks.parent.mkdir(parents=True, exist_ok=True)
        run_steps([[spy, "record", "-r", "250", "-f", "raw", "-o", str(stacks), "--", *step]],
                  b.env, b.work)
        found.append({"file": str(stacks), **_top(stacks)})
        say(f"  profile {row.name} step {i + 1}: " + ", ".join(
            f"{frame.split(' (')[0]} {pct:.0%}" for frame, pct in found[-1]["self"][:4]))
    b.extra.setdefault("profiles", {})[row.name] = found


def measure(b: Bench) -> None:
    for group in GROUPS:
        if group not in b.groups and not (group == "seal" and {"open", "ingest", "find",
                                                                 "restore"} & set(b.groups)):
            continue
        say(f"{group}:")
        first = len(b.rows)
        BUILDERS[group](b)
        # groups after seal need its bundle even when seal itself is not wanted
        runs = b.runs if group in b.groups else 1
        alternate(b.rows[first:], b.sample, runs, say)
        if group not in b.groups:
            del b.rows[first:]
        if group == "find" and group in b.groups:
            hyperfine_check(b)
        if group in b.groups and b.profile:
            for row in b.rows[first:]:
                if row.kind == "chatvault" and row.skipped is None:
                    profile(b, row)


# -- command line -------------------------------------------------------------------

def _chatvault_command() -> list[str]:
    script = Path(sys.executable).parent / "chatvault"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "vault"]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATVAULT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=list(bench_corpus.SIZES), default="small")
    ap.add_argument("--runs", type=int, default=None,
                    help="samples per figure (default: 5 small, 3 medium and large)")
    ap.add_argument("--json", dest="json_out", type=Path, default=None,
                    help="results file (default: bench-out/results-SIZE.json)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out",
                    help="corpora and scratch folder (default: bench-out/)")
    ap.add_argument("--only", default=",".join(GROUPS),
                    help=f"comma-separated groups out of {','.join(GROUPS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true",
                    help="also run each chatvault command once under py-spy")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder (homes, stores, bundles) for a look")
    args = ap.parse_args(argv)
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    runs = args.runs or (5 if args.size in ("toy", "tiny", "small") else 3)

    started = time.time()
    out = args.out.resolve()
    say(f"corpus: {args.size} ...")
    corpus = bench_corpus.cached_corpus(out / "corpus", args.size, args.seed)
    work = out / f"work-{args.size}"
    fresh(work)
    b = Bench(args.size, runs, out, work, groups, corpus, _chatvault_command(),
              _environment(), {t: shutil.which(t) for t in PEERS})
    b.profile = args.profile
    before = machine()
    try:
        prepare(b)
        measure(b)
    except StepFailed as exc:
        say(f"bench: a measured command failed, so no figure would mean anything: {exc}")
        return 1
    result = bench_report.result(b, before, started)
    target = args.json_out or out / f"results-{args.size}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(bench_report.table(result))
    say(f"results written to {target}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)  # stores and copies: gigabytes at large
    return 0


if __name__ == "__main__":
    sys.exit(main())
