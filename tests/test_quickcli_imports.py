"""The quick lane's start-up: what ``chatvault subject find`` does not need, it does not import.

Each lookup runs in a fresh interpreter (the way the console script runs) and
reports which heavy modules ended up in ``sys.modules``. The phone lookup
is the control: it must import phonenumbers, so a check that could never
fail would show here. No timings are asserted.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Pair
from vault_kit import conv, ingested

#: modules an e-mail lookup has no use for (crypto, the Typer stack, phone parsing, logging)
NOT_FOR_EMAIL = ("phonenumbers", "nacl", "typer", "click", "rich", "pydantic", "sqlite_utils",
                 "zstandard", "logging", "zoneinfo", "secrets", "tempfile", "vault.tombstones",
                 "vault.keys", "vault.trust", "vault.cli")

_SCRIPT = """
import contextlib, io, json, sys
import vault.quickcli as q
options, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["chatvault", "subject", "find", *options]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    q.main()
loaded = sorted({m for m in sys.modules for w in watched if m == w or m.startswith(w + ".")})
import logging  # only now: to see whether the lookup set a handler up
json.dump({"out": json.loads(out.getvalue()), "loaded": loaded,
           "root_handlers": len(logging.getLogger().handlers)}, sys.stderr)
"""


@pytest.fixture
def filled(pair: Pair, tmp_path: Path) -> Pair:
    return ingested(pair, tmp_path, [
        conv("w1", ["hello"], email="mara.quint@example.org", phone="07700 900123",
             at="2024-01-10T10:00:00Z"),
        conv("w2", ["write to mara.quint@example.org"], email="ana@example.org", phone=None,
             at="2024-03-10T10:00:00Z")])


def lookup(home: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """One ``subject find ... --json`` in a fresh interpreter: its answer and what it loaded."""
    options = [*args, "--home", str(home), "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(options), json.dumps(NOT_FOR_EMAIL)],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr)


def audit_count(home: Path) -> int:
    with sqlite3.connect(home / "store.db") as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log WHERE action = 'subject.find'")
                   .fetchone()[0])


def test_email_lookup_imports_none_of_it(filled: Pair) -> None:
    before = audit_count(filled.vault_path)

    got = lookup(filled.vault_path, "--email", "Mara.Quint@example.org")

    assert got["loaded"] == []
    # still the whole answer: participant in w1, mentioned in w2
    assert got["out"]["exact"] == 2
    assert [r["conversation_id"] for r in got["out"]["results"]] == ["w1", "w2"]
    assert audit_count(filled.vault_path) == before + 1  # and still audited
    assert got["root_handlers"] == 0  # nothing set up that nothing uses


def test_phone_lookup_does_parse_phones(filled: Pair) -> None:
    got = lookup(filled.vault_path, "--phone", "07700-900-123")

    assert "phonenumbers" in got["loaded"]
    assert "nacl" not in got["loaded"] and "typer" not in got["loaded"]
    assert got["out"]["exact"] == 1


def test_a_log_level_asked_for_is_set_up(filled: Pair) -> None:
    got = lookup(filled.vault_path, "--email", "ana@example.org",
                 env={"CHATVAULT_LOG": "DEBUG"})

    assert got["root_handlers"] == 1
    assert got["out"]["exact"] == 1
