"""What identifies a person in a record: participants' identifiers, mentions in text.

Ingest indexes these (``identifiers`` and ``mentions``), and erasure, DSAR
redaction and the tombstone filter ask the same functions, so a record is
read the same way everywhere: e-mail case-folded, phone in E.164 with the
vault's region (digits kept as ``phone_unparsed`` when no region says what
they mean), names as :func:`vault.identifiers.name_key`.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from typing import Any

from vault import identifiers

Mention = tuple[str, str]  # kind, value

#: six digits in a row, allowing the separators people write numbers with
_PHONE_HINT = re.compile(r"\d(?:[\s().\-/]{0,3}\d){5}")
#: the same on ASCII text, where ``\d`` is [0-9]: a bitmap test, twice as fast
_PHONE_HINT_ASCII = re.compile(r"[0-9](?:[\s().\-/]{0,3}[0-9]){5}")
#: entries of each normalisation cache: a bundle repeats agents' names and a
#: returning customer's identifiers within a few conversations, and a bounded
#: cache keeps ingest's memory flat however large the bundle (a full one of
#: 65,536 entries held about 16 MiB)
CACHE_ENTRIES = 4096


def suspects(texts: list[str]) -> list[int]:
    """Indexes of the texts that may hold an e-mail address or a phone number.

    Most conversations hold neither, so the whole conversation is scanned
    once, joined by NUL: neither a digit nor a separator of the phone hint,
    so no match spans two texts, and a text has a match in the joined string
    exactly when it has one of its own (each match is mapped back to its
    text by offset). Gives the same texts as testing each one on its own.
    """
    joined = "\x00".join(texts)
    found = [i for i, t in enumerate(texts) if "@" in t] if "@" in joined else []
    hint = _PHONE_HINT_ASCII if joined.isascii() else _PHONE_HINT
    match = hint.search(joined)
    if match is None:
        return found
    ends = list(itertools.accumulate(len(t) + 1 for t in texts))
    while match is not None:
        i = bisect.bisect_right(ends, match.start())
        found.append(i)
        match = hint.search(joined, ends[i])  # the next text on
    return sorted(set(found))


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _normal_phone(text: str, region: str | None) -> str | None:
    return identifiers.normalise_phone(text, region)


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _name_key(text: str) -> str:
    return identifiers.name_key(text)


def phone(text: Any, region: str | None) -> str | None:
    return _normal_phone(text, region) if isinstance(text, str) else None


def participant_identifiers(p: dict[str, Any], region: str | None) -> list[tuple[str, str]]:
    """(kind, value) of everything that identifies one participant, normalised."""
    out: list[tuple[str, str]] = []
    email = identifiers.normalise_email(p.get("email"))
    if email:
        out.append(("email", email))
    phone = p.get("phone")
    if isinstance(phone, str) and phone.strip():
        e164 = _normal_phone(phone, region)
        if e164:
            out.append(("phone", e164))
        else:
            digits = re.sub(r"\D", "", phone)
            if digits:
                out.append(("phone_unparsed", digits))
    if isinstance(p.get("customer_id"), str) and p["customer_id"]:
        out.append(("customer_id", p["customer_id"]))
    ids = p.get("platform_ids")
    if isinstance(ids, dict):
        # the platform's name in lower case, as subject find takes it; ids as written
        out += [("platform_id", f"{str(k).lower()}:{v}") for k, v in sorted(ids.items())
                if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v)]
    if isinstance(p.get("name"), str):
        key = _name_key(p["name"])
        if key:
            out.append(("name", key))
    return out


def text_mentions(text: str, region: str | None) -> list[tuple[str, str]]:
    """(kind, value) of e-mail addresses and phone numbers written in ``text``."""
    found: list[Mention] = []
    if "@" in text:
        found += [("email", e) for e in identifiers.find_emails(text)]
    # The matcher is slow; text without six digits in a phone-like run is not
    # given to it (shorter numbers are order numbers, prices, times).
    if _PHONE_HINT.search(text):
        phones, unparsed = identifiers.find_phones(text, region)
        found += [("phone", p) for p in phones]
        found += [("phone_unparsed", d) for d in unparsed]
    return found
