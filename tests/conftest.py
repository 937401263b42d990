"""Shared fixtures: a clean environment, cheap key stretching, paired homes.

Every test runs with chatvault's environment variables cleared and HOME-like
state in a temporary folder. Argon2id is switched to its cheapest settings
(only honoured inside pytest: see vault.keys.kdf_limits).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a red build must be reproducible);
# local runs explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
CASES = SHARED / "cases"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CHATVAULT_") and name != "CHATVAULT_REQUIRE_MEDIA_TESTS":
            monkeypatch.delenv(name)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("CHATVAULT_TEST_CHEAP_KDF", "1")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        import json

        return json.loads(self.out)


def run_cli(*args: str | Path, input_text: str | None = None) -> Result:
    """Run the chatvault command in this process (fast) and capture its output."""
    from vault.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["chatvault", *[str(a) for a in args]]
    old_argv, old_stdin = sys.argv, sys.stdin
    sys.argv = argv
    if input_text is not None:
        sys.stdin = io.StringIO(input_text)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdin = old_argv, old_stdin
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args: str | Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> Result:
    """Run chatvault in a fresh process: no state shared with the test."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "vault", *[str(a) for a in args]],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def proc():
    return run_proc


@dataclass
class Pair:
    """An exporter home and a vault home that trust each other."""

    exporter: "object"
    vault: "object"
    root: Path

    @property
    def exporter_path(self) -> Path:
        return self.exporter.path  # type: ignore[attr-defined]

    @property
    def vault_path(self) -> Path:
        return self.vault.path  # type: ignore[attr-defined]


def make_pair(root: Path) -> Pair:
    from vault import home

    exp = home.create("exporter", root / "exporter", "test-exporter")
    vlt = home.create("vault", root / "vault", "test-vault")
    t = exp.trust()
    t.trust(vlt.public_key.read_text(), "vault")
    t.save()
    t = vlt.trust()
    t.trust(exp.public_key.read_text(), "exporter")
    t.save()
    return Pair(exp, vlt, root)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


@pytest.fixture
def sample_jsonl() -> Path:
    return REPO / "vault" / "samples" / "conversations.jsonl"
