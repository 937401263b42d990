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


def conversation_strategy() -> Any:
    """Hypothesis strategy: valid conversations with any text, roles, offsets, extras."""
    from hypothesis import strategies as st

    ident = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
    scalar = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    extra = st.dictionaries(st.text(min_size=1, max_size=8),
                            st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                                         | st.dictionaries(st.text(max_size=5), inner,
                                                           max_size=3), max_leaves=6),
                            max_size=3)
    moment = st.integers(946684800_000000, 4102444800_000000).map(
        lambda us: sources.epoch_text(us, 1_000_000))
    offset = st.none() | st.sampled_from(["+01:00", "-05:30", "+09:00"])

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        pids = draw(st.lists(ident, min_size=1, max_size=4, unique=True))
        people = [records.participant(pid, draw(st.sampled_from(records.ROLES)),
                                      name=draw(st.none() | st.text(max_size=15)),
                                      email=draw(st.none() | st.emails()),
                                      extra=draw(extra)) for pid in pids]
        mids = draw(st.lists(ident, min_size=1, max_size=6, unique=True))
        msgs = [records.message(
            mid, draw(moment), draw(st.sampled_from([None, *pids])), draw(st.text(max_size=40)),
            at_offset=draw(offset), system=draw(st.none() | st.just(True)),
            visibility=draw(st.none() | st.sampled_from(records.VISIBILITIES)),
            reply_to=draw(st.none() | st.sampled_from(mids)), extra=draw(extra),
            attachments=draw(st.lists(st.builds(records.attachment, name=st.text(max_size=8),
                                                omitted=st.just(True)), max_size=2)))
            for mid in mids]
        conv = records.conversation(draw(ident), min(m["at"] for m in msgs), people, msgs,
                                    source="prop", platform="prop", channel=draw(
                                        st.none() | st.text(max_size=15)),
                                    tags=draw(st.lists(st.text(max_size=6), max_size=2)),
                                    extra=draw(extra))
        records.validate(conv)
        return conv

    return build()
