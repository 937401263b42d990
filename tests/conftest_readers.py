"""Helpers shared by the reader tests (imported, not a pytest conftest).

The corpus and the cases live next to the repository, in ``../shared``;
tests that need them skip when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vault import identifiers, records, sources

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
CASE_INPUTS = SHARED / "cases" / "inputs"


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus file {relative} not present")
    return path


def case_input(name: str) -> Path:
    path = CASE_INPUTS / name
    if not path.exists():
        pytest.skip(f"case input {name} not present")
    return path


def read_all(path: Path, fmt: str, **options: Any) -> tuple[list[dict[str, Any]],
                                                               sources.ReadOptions]:
    """Every conversation (validated) and the options holding the problems reported."""
    opts = sources.ReadOptions(**options)
    return list(sources.read(path, fmt, opts)), opts


def messages(convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real messages (not system events), in order, across conversations."""
    return [m for c in convs for m in c["messages"] if not m.get("system")]


def events(convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for c in convs for m in c["messages"] if m.get("system")]


def names(convs: list[dict[str, Any]]) -> list[str]:
    """Participant names across conversations, first seen first, each once."""
    out: list[str] = []
    for conv in convs:
        for p in conv["participants"]:
            if p.get("name") and p["name"] not in out:
                out.append(p["name"])
    return out


def people(convs: list[dict[str, Any]]) -> int:
    return sum(len(c["participants"]) for c in convs)


def texts(convs: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages(convs)]


def found(convs: list[dict[str, Any]], region: str | None = None) -> identifiers.Found:
    """Identifiers of all conversations together."""
    total = identifiers.Found()
    for conv in convs:
        one = identifiers.collect(conv, region)
        total._add(total.emails, one.emails)
        total._add(total.phones, one.phones)
        total._add(total.unparsed_phones, one.unparsed_phones)
    return total


def canonical(convs: list[dict[str, Any]]) -> list[bytes]:
    return [records.canonical_record(c)[0] for c in convs]
