"""The benchmark's measurement groups: what each contender runs, on what input.

Each ``*_group`` function adds rows to a :class:`Bench` (a contender and how
to take one sample of it: set-up, not timed, then the timed commands); the
harness (:mod:`bench_harness`) samples them interleaved. Inputs are the
corpus (:mod:`bench_corpus`), its messages flattened for sqlite-utils and
the floor, and a Slack export of it; homes are made once by
:func:`bench_harness.prepare` and copied fresh wherever a run changes them.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

import bench_corpus
from bench_measure import Row, Sample, StepFailed, run_steps, time_calls


HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GROUPS = ("seal", "open", "export", "ingest", "find", "restore", "memory")
SMALLER = {"large": "medium", "medium": "small", "small": "tiny", "tiny": "toy",
           "toy": None}
PEERS = ("tar", "zstd", "age", "age-keygen", "minisign", "rg", "hyperfine")


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass
class Plan:
    """How to take one sample of a row: set-up (not timed), then the timed steps."""

    steps: Callable[[], Sequence[Any]]
    before: Callable[[], None] = field(default=lambda: None)


@dataclass
class Bench:
    size: str
    runs: int
    out: Path
    work: Path
    groups: tuple[str, ...]
    corpus: bench_corpus.CorpusInfo
    cv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str | None] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    profile: bool = False

    def path(self, name: str) -> Path:
        return self.work / name

    def chatvault(self, *args: str | Path) -> list[str]:
        return [*self.cv, *map(str, args)]

    def row(self, group: str, name: str, kind: str, plan: Plan | None, command: str, *,
            needs: Sequence[str] = (), **fields: Any) -> Row:
        row = Row(group, name, kind, command, **fields)
        missing = [t for t in needs if not self.tools.get(t)]
        if missing:
            row.skipped = f"{', '.join(missing)} not installed"
        elif plan is not None:
            self.plans[name] = plan
        self.rows.append(row)
        return row

    def sample(self, row: Row) -> Sample:
        plan = self.plans[row.name]
        plan.before()
        return run_steps(plan.steps(), self.env, self.work)

    def setup_cmd(self, argv: Sequence[str | Path]) -> str:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              env=self.env, cwd=self.work)
        if proc.returncode != 0:
            raise StepFailed(f"set-up failed: {' '.join(map(str, argv))}\n{proc.stderr}")
        return proc.stdout


def _fixed(*steps: Any) -> Callable[[], list[Any]]:
    """The steps of a plan that runs the same commands every time."""
    return lambda: list(steps)


def fresh(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def copy_home(src: Path, dst: Path) -> None:
    fresh(dst)
    shutil.copytree(src, dst, symlinks=True)


def _derived_inputs(b: Bench) -> tuple[Path, int, Path, dict[str, int]]:
    """(messages flattened, their count, Slack export, its size), cached beside the corpus."""
    base = Path(b.corpus.path)
    flat = base.with_name(base.stem + ".messages.jsonl")
    if not flat.is_file():
        say(f"flattening {base.name} into messages ...")
        bench_corpus.flatten(base, flat)
    slack = base.with_name(base.stem + ".slack")
    info_file = slack / "bench-info.json"
    if not info_file.is_file():
        say(f"writing a Slack export of {base.name} ...")
        fresh(slack)
        info = bench_corpus.slack_export(base, slack, b.corpus.bytes)
        info_file.write_bytes(orjson.dumps(info))
    info = orjson.loads(info_file.read_bytes())
    return flat, b.corpus.messages, slack, info


# -- the groups ---------------------------------------------------------------------

def seal_group(b: Bench) -> None:
    corpus, key = Path(b.corpus.path), b.path("vault0/keys/public.key")
    size: dict[str, Any] = {"input_bytes": b.corpus.bytes, "messages": b.corpus.messages}
    for threads, label in (("1", "one zstd worker"), ("-1", "one zstd worker per core"),
                           ("0", "zstd in the calling thread")):
        out = b.path(f"seal{threads}.cvb")
        cmd = b.chatvault("bundle", "seal", corpus, "--home", b.path("exporter"), "--to",
                          key, "--source", "bench", "--seq", "1", "-o", out, "--threads",
                          threads)
        row = b.row("seal", f"chatvault seal --threads {threads}", "chatvault",
                    Plan(_fixed(cmd), partial(fresh, out)),
                    f"chatvault bundle seal --threads {threads}", note=label, **size)
        if threads == "1":
            row.versus.append(("tar|zstd -T1|age + minisign", 0.8))
        elif threads == "-1":
            row.versus.append(("tar|zstd -T2|age + minisign", 1.0))
        else:
            row.versus.append(("tar|zstd -T1|age + minisign", None))
    recipient = b.extra.get("age_recipient", "missing")
    for t in ("1", "2"):
        peer_out = b.path(f"peer{t}.tar.zst.age")
        line = (f"tar -cf - -C {corpus.parent} {corpus.name} | zstd -3 -T{t} -q | "
                f"age -r {recipient} > {peer_out} && minisign -S -s {b.path('ms.key')} "
                f"-m {peer_out} -x {peer_out}.minisig")
        b.row("seal", f"tar|zstd -T{t}|age + minisign", "peer",
              Plan(_fixed(line), partial(fresh, peer_out)), line,
              needs=("tar", "zstd", "age", "minisign"), **size)


def open_group(b: Bench) -> None:
    bundle, v0 = b.path("seal-1.cvb"), b.path("vault0")
    opened = b.path("opened.jsonl")
    size: dict[str, Any] = {"input_bytes": b.corpus.bytes, "messages": b.corpus.messages}
    verify = b.chatvault("bundle", "verify", bundle, "--home", v0)
    open_ = b.chatvault("bundle", "open", bundle, "--home", v0, "-o", opened)
    row = b.row("open", "chatvault verify + open", "chatvault",
                Plan(lambda: [verify, open_], lambda: fresh(opened)),
                "chatvault bundle verify, then bundle open", **size)
    row.versus.append(("minisign -V + age -d|zstd -d|tar -x", 1.0))
    row = b.row("open", "chatvault open", "chatvault",
                Plan(lambda: [open_], lambda: fresh(opened)),
                "chatvault bundle open (verifies too)", **size)
    row.versus.append(("minisign -V + age -d|zstd -d|tar -x", None))
    peer, dest = b.path("peer2.tar.zst.age"), b.path("peer-opened")
    line = (f"minisign -V -q -p {b.path('ms.pub')} -m {peer} -x {peer}.minisig && "
            f"age -d -i {b.path('age.key')} {peer} | zstd -d -q | tar -xf - -C {dest}")

    def before() -> None:
        fresh(dest)
        dest.mkdir()
    b.row("open", "minisign -V + age -d|zstd -d|tar -x", "peer",
          Plan(lambda: [line], before), line, needs=("tar", "zstd", "age", "minisign"),
          **size)


def _exporter_home(b: Bench, name: str, fmt: str, source: Path) -> Path:
    """A pristine exporter home with one source, copied before every run."""
    home = b.path(f"exporter-{name}")
    copy_home(b.path("exporter"), home)
    shutil.rmtree(home / "state", ignore_errors=True)
    config = home / "config.toml"
    # the bench's stick is a folder beside the homes, not a mounted file system
    text = config.read_text(encoding="utf-8").replace("mounted_only = true",
                                                      "mounted_only = false")
    text += (f'\n[[recipients]]\npublic_key = "{b.path("vault0/keys/public.key")}"\n'
             f'\n[[sources]]\nname = "{name}"\nformat = "{fmt}"\npath = "{source}"\n'
             f'phone_region = "GB"\n')
    config.write_text(text, encoding="utf-8")
    return home


def export_group(b: Bench) -> None:
    _, _, slack, slack_info = _derived_inputs(b)
    inputs: list[tuple[str, str, Path, dict[str, Any]]] = [
        ("jsonl", "jsonl", Path(b.corpus.path),
         {"input_bytes": b.corpus.bytes, "messages": b.corpus.messages}),
        ("slack", "slack", slack, {"input_bytes": slack_info["bytes"],
                                   "messages": slack_info["messages"]})]
    for name, fmt, source, size in inputs:
        pristine = _exporter_home(b, name, fmt, source)
        run_home, stick = b.path(f"export-{name}"), b.path(f"stick-{name}")

        def before(pristine: Path = pristine, run_home: Path = run_home,
                   stick: Path = stick) -> None:
            copy_home(pristine, run_home)
            fresh(stick)
            stick.mkdir()
        cmd = b.chatvault("export", "run", "--home", run_home, "--media", stick, "--quiet")
        b.row("export", f"chatvault export run ({name})", "chatvault",
              Plan(_fixed(cmd), before), f"chatvault export run, {fmt} source",
              note="reads, normalises, validates, seals, writes to the media", **size)


_FLOOR = """
import sqlite3, sys, orjson
conn = sqlite3.connect(sys.argv[2], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA synchronous = FULL")
conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT, "
             "position INTEGER, message_id TEXT, at TEXT, sender TEXT, text TEXT, "
             "direction TEXT)")
cols = ("conversation_id", "position", "message_id", "at", "sender", "text", "direction")
conn.execute("BEGIN")
with open(sys.argv[1], "rb") as fh:
    rows = []
    for line in fh:
        m = orjson.loads(line)
        rows.append(tuple(m[c] for c in cols))
        if len(rows) == 5000:
            conn.executemany("INSERT INTO messages VALUES (NULL,?,?,?,?,?,?,?)", rows)
            rows = []
    conn.executemany("INSERT INTO messages VALUES (NULL,?,?,?,?,?,?,?)", rows)
conn.execute("COMMIT")
"""


def ingest_group(b: Bench) -> None:
    flat, count, _, _ = _derived_inputs(b)
    bundle, vault = b.path("seal-1.cvb"), b.path("vault")
    size: dict[str, Any] = {"input_bytes": b.corpus.bytes, "messages": count}
    cmd = b.chatvault("vault", "ingest", bundle, "--home", vault, "--quiet")
    row = b.row("ingest", "chatvault vault ingest", "chatvault",
                Plan(lambda: [cmd], lambda: copy_home(b.path("vault0"), vault)),
                "chatvault vault ingest (verify, decrypt, validate, upsert, FTS, mentions)",
                **size)
    row.versus += [("sqlite-utils insert --nl + enable-fts", 1.0),
                   ("executemany, no index (floor)", 0.4)]
    db = b.path("sqlite-utils.db")
    su = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent)) or "sqlite-utils"
    insert = [su, "insert", str(db), "messages", str(flat), "--nl"]
    fts = [su, "enable-fts", str(db), "messages", "text"]
    b.row("ingest", "sqlite-utils insert --nl + enable-fts", "peer",
          Plan(lambda: [insert, fts], lambda: fresh(db)),
          "sqlite-utils insert DB messages FLAT --nl; sqlite-utils enable-fts DB messages text",
          note="the same messages flattened to one JSON object a line", **size)
    floor = b.path("floor.db")

    def no_floor() -> None:
        for p in floor.parent.glob(floor.name + "*"):
            fresh(p)
    b.row("ingest", "executemany, no index (floor)", "floor",
          Plan(lambda: [[sys.executable, "-c", _FLOOR, str(flat), str(floor)]], no_floor),
          "python: orjson.loads each line, executemany in one transaction, no index",
          **size)


def find_group(b: Bench) -> None:
    """In-process lookups (median of many) and one-shot commands against rg."""
    person = bench_corpus.probe()
    vault, corpus = _ingested_vault(b), Path(b.corpus.path)
    size: dict[str, Any] = {"input_bytes": b.corpus.bytes}
    for how, option, value, written in (
            ("e-mail", "--email", person.email, person.email),
            ("phone", "--phone", person.phone_national, person.phone_written)):
        cmd = b.chatvault("subject", "find", option, value, "--home", vault, "--json")
        row = b.row("find", f"chatvault subject find ({how})", "chatvault",
                    Plan(_fixed(cmd)), f"chatvault subject find {option} ... --json",
                    note="start-up, lookup, restriction check, audit entry")
        row.versus.append((f"rg -F ({how})", 1.0))
        line = ["rg", "-F", written, str(corpus)]
        b.row("find", f"rg -F ({how})", "peer", Plan(_fixed(line)),
              "rg -F VALUE corpus.jsonl", needs=("rg",),
              note="one written form only" if how == "phone" else None, **size)
    b.extra["find_in_process"] = _find_in_process(vault, person)


def _find_in_process(vault: Path, person: bench_corpus.Person) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from vault import store, subjects

    conn = store.connect(vault / store.FILE_NAME)
    out: dict[str, Any] = {}
    try:
        for how, kw in (("e-mail", {"emails": [person.email]}),
                        ("phone", {"phones": [person.phone_national]})):
            subject = subjects.Subject.parse(region="GB", **kw)  # type: ignore[arg-type]
            found = subjects.find(conn, subject)
            times = time_calls(lambda: subjects.find(conn, subject), 300)
            parse = time_calls(lambda: subjects.Subject.parse(region="GB", **kw), 300)
            out[how] = {"matches": len(found), "calls": len(times),
                        "ms_median": statistics.median(times) * 1e3,
                        "ms_min": min(times) * 1e3, "ms_max": max(times) * 1e3,
                        "parse_ms_median": statistics.median(parse) * 1e3}
    finally:
        conn.close()
    return out


def _ingested_vault(b: Bench) -> Path:
    """The vault the ingest group left behind (or one made now, without the group)."""
    vault = b.path("vault")
    if "ingest" not in b.groups:
        copy_home(b.path("vault0"), vault)
        run_steps([b.chatvault("vault", "ingest", b.path("seal-1.cvb"), "--home", vault,
                               "--quiet")], b.env, b.work)
    return vault


def restore_group(b: Bench) -> None:
    vault = _ingested_vault(b) if "find" not in b.groups else b.path("vault")
    parts, opened = b.path("restore-parts"), b.path("restored")
    create = b.chatvault("restore", "create", "--home", vault, "--to",
                         b.path("exporter/keys/public.key"), "--source", "bench", "--out",
                         parts)
    open_ = " ".join(b.chatvault("restore", "open")) + f" {parts}/*.cvb --home " \
        f"{b.path('exporter')} --out {opened}"

    def before() -> None:
        fresh(parts)
        fresh(opened)
    b.row("restore", "chatvault restore create + open", "chatvault",
          Plan(lambda: [create, open_], before),
          "chatvault restore create --source; chatvault restore open",
          input_bytes=b.corpus.bytes, messages=b.corpus.messages)


def memory_group(b: Bench) -> None:
    """Peak RSS of seal, open and ingest at the next smaller size (this size: above)."""
    smaller = SMALLER[b.size]
    if smaller is None:
        return
    info = bench_corpus.cached_corpus(b.out / "corpus", smaller)
    key, bundle = b.path("vault0/keys/public.key"), b.path("memory.cvb")
    seal = b.chatvault("bundle", "seal", info.path, "--home", b.path("exporter"), "--to", key,
                       "--source", "bench", "--seq", "1", "-o", bundle, "--threads", "-1")
    open_ = b.chatvault("bundle", "open", bundle, "--home", b.path("vault0"), "-o",
                        b.path("memory.jsonl"))
    ingest = b.chatvault("vault", "ingest", bundle, "--home", b.path("vault-memory"),
                         "--quiet")
    size: dict[str, Any] = {"input_bytes": info.bytes, "messages": info.messages}
    b.row("memory", f"seal --threads -1 ({smaller})", "chatvault",
          Plan(lambda: [seal], lambda: fresh(bundle)), "chatvault bundle seal", **size)
    b.row("memory", f"open ({smaller})", "chatvault",
          Plan(lambda: [open_], lambda: fresh(b.path("memory.jsonl"))),
          "chatvault bundle open", **size)
    b.row("memory", f"ingest ({smaller})", "chatvault",
          Plan(lambda: [ingest], lambda: copy_home(b.path("vault0"),
                                                    b.path("vault-memory"))),
          "chatvault vault ingest", **size)
    b.extra["memory_sizes"] = {"this": b.size, "smaller": smaller}


BUILDERS: dict[str, Callable[[Bench], None]] = {
    "seal": seal_group, "open": open_group, "export": export_group, "ingest": ingest_group,
    "find": find_group, "restore": restore_group, "memory": memory_group}
