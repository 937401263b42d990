"""Identifiers in every string of a record, however they are written, and the walk to reach them.

A conversation holds its text more than once: Telegram's ``text_entities``,
an HTML body (Freshdesk, Intercom), Slack ``blocks``, an attachment's alt
text, a title, a key of an ``extra`` object. Erasure (:mod:`vault.tombstones`)
and DSAR packages (:mod:`vault.dsarpack`) must reach every copy, so they
share one matcher and one walk:

* :func:`find` says where identifiers are written in one string:

  - :func:`vault.identifiers.spans`, the matcher ingest and search use
    (an address glued to a URL's query, ``?u=ana@example.org``, is taken
    apart from it);
  - with ``loose``: runs of 8 to 15 digits the strict matcher leaves out
    (glued to letters, ``ref07700900123``), as their digits, never parsed;
  - forms encoded in URLs or HTML (``ana%40example.org``, ``&#64;``,
    ``&commat;``, ``%2B44%207700...``): the string is decoded (twice at
    most) and matched, and each match is found back in the string as
    written, every character in any of its encodings.

* :func:`rewrite` rebuilds a JSON value with every string, keys of objects
  included, passed through a function; what does not change is returned as
  it is (the very same object), so callers can tell "untouched" cheaply.

What this does not find: an identifier split by markup (``ana<b>@</b>...``)
or written in words ("ana at example dot org").
"""

from __future__ import annotations

import functools
import html
import re
from html.entities import html5
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from vault import identifiers
from vault.identifiers import Span

#: six digits in a row, allowing the separators people write numbers with
PHONE_HINT = re.compile(r"\d(?:[\s().\-/]{0,3}\d){5}")
#: 8 to 15 digits with separators, wherever they stand (the loose pass)
_DIGIT_RUN = re.compile(r"(?<![\d+])\+?\d(?:[\s().\-/]{0,3}\d){7,14}(?!\d)")
#: canonical timestamps and content hashes never hold an identifier: skipped fast
_INERT = re.compile(r"^(?:\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)|[0-9a-f]{64})$")
_MAX_VARIANTS = 6
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
#: the cheap pass: digits and separators in a row (a character class: no backtracking),
#: cut where more than three separators stand together
_RUNISH = re.compile(r"[\d(][\d\s().\-/]{6,}")
_WIDE_GAP = re.compile(r"[\s().\-/]{4,}")
_NON_DIGIT = re.compile(r"\D")
#: an e-mail-like token, cut at markup delimiters (the cheap pass)
_EMAILISH = re.compile(r"[^\s\x00@<>()\[\]{},;\"'\\]+@[^\s\x00@<>()\[\]{},;\"'\\/?=&#:]+")
#: characters an address in a URL is glued to (``?u=ana@example.org``)
_URL_GLUE = re.compile(r".*[/?=&#:]")

Rewriter = Callable[[str, tuple[Any, ...]], str]


def may_hold(text: str) -> bool:
    """Cheap test: could ``text`` hold an e-mail address or a phone number, in any form?"""
    if len(text) < 6 or _INERT.match(text):
        return False
    return "@" in text or "%" in text or "&" in text or PHONE_HINT.search(text) is not None


def _overlaps(spans: list[Span], start: int, end: int) -> bool:
    return any(s.start < end and start < s.end for s in spans)


def _loose(text: str, taken: list[Span]) -> list[Span]:
    """Digit runs as ``phone_unparsed`` digits (an international ``00`` taken off).

    Never parsed (that is what makes the pass cheap): a number erased is
    tombstoned under each of its digit forms too
    (:func:`vault.tombstones.phone_digit_forms`), which these are compared with.
    """
    out = []
    for m in _DIGIT_RUN.finditer(text):
        if _overlaps(taken, m.start(), m.end()) or _DATE.match(m.group(0)):
            continue
        digits = re.sub(r"\D", "", m.group(0))
        if digits.startswith("00"):
            digits = digits[2:]
        out.append(Span(m.start(), m.end(), "phone_unparsed", digits))
    return out


@functools.lru_cache(maxsize=1)
def _entity_names() -> dict[str, tuple[str, ...]]:
    """Named HTML entities (with their ``;``) of each single character, e.g. @ -> &commat;."""
    names: dict[str, list[str]] = {}
    for name, char in html5.items():
        if len(char) == 1 and name.endswith(";"):
            names.setdefault(char, []).append(name)
    return {c: tuple(sorted(n)) for c, n in names.items()}


@functools.lru_cache(maxsize=1024)
def encoded_pattern(written: str) -> re.Pattern[str]:
    """``written`` as it may appear in a URL or HTML: each character literal or encoded."""
    parts = []
    for ch in written:
        utf8 = ch.encode("utf-8")
        forms = [re.escape(ch), "".join(f"%{b:02x}" for b in utf8),
                 "".join(f"%25{b:02x}" for b in utf8), f"&#0*{ord(ch)};", f"&#x0*{ord(ch):x};"]
        forms += [re.escape("&" + n) for n in _entity_names().get(ch, ())]
        parts.append("(?:" + "|".join(forms) + ")")
    return re.compile("".join(parts), re.IGNORECASE)


def _variants(text: str) -> Iterator[str]:
    """``text`` decoded as HTML and as a URL, up to twice, each distinct form once."""
    seen, frontier = {text}, [text]
    for _ in range(2):
        nxt = []
        for t in frontier:
            for decoded in (html.unescape(t), unquote(t)):
                if decoded not in seen and len(seen) <= _MAX_VARIANTS:
                    seen.add(decoded)
                    nxt.append(decoded)
                    yield decoded
        frontier = nxt


def _strict(text: str, region: str | None) -> list[Span]:
    """:func:`vault.identifiers.spans`, with addresses unglued from URLs.

    The address pattern allows ``/ ? = &`` in the local part, so in
    ``https://x.example/?u=ana@example.org`` it takes everything from ``//``.
    A local part holding ``//`` or ``?`` is a URL's: where what follows the
    last of ``/ ? = & # :`` is an address of its own, that is the address.
    """
    out = []
    for s in identifiers.spans(text, region):
        if s.kind == "email":
            written = text[s.start:s.end]
            local = written.split("@", 1)[0]
            glue = _URL_GLUE.match(local) if "//" in local or "?" in local else None
            if glue:
                value = identifiers.normalise_email(written[glue.end():])
                if value:
                    s = Span(s.start + glue.end(), s.end, "email", value)
        out.append(s)
    return out


def find(text: str, region: str | None, *, loose: bool = False,
         strict: bool = True) -> list[Span]:
    """Where identifiers are written in ``text`` (see the module docstring), in order.

    ``strict=False`` leaves out what :func:`vault.identifiers.spans` finds
    in the text as it is (the caller already has it); ``loose`` adds digit
    runs. Spans never overlap.
    """
    if not may_hold(text):
        return []
    text = text[:identifiers.MAX_TEXT_CHARS]
    out = _strict(text, region) if strict else []
    if "%" in text or "&" in text:
        # Encoded forms before loose digit runs: "%2B44%207700..." is one number,
        # not the digits "20900123".
        for variant in _variants(text):
            inner = _strict(variant, region)
            if loose:
                inner += _loose(variant, inner)
            for s in inner:
                for m in encoded_pattern(variant[s.start:s.end]).finditer(text):
                    if not _overlaps(out, m.start(), m.end()):
                        out.append(Span(m.start(), m.end(), s.kind, s.value))
    if loose:
        out += _loose(text, out)
    return sorted(out, key=lambda s: s.start)


def candidates(text: str) -> Iterator[tuple[str, str]]:
    """Cheap, over-inclusive: (kind, value) pairs an identifier in ``text`` may hash as.

    Regular expressions only, no phone parsing: e-mail-like tokens cut at
    URL and markup delimiters (normalised), and each digit run's digits with
    every suffix of 7 digits or more (``+44 (0) 7700 900123`` holds the
    national ``07700900123``). For a quick "could this record hold an
    erased identifier?" before :func:`find` does it properly.
    """
    if not may_hold(text):
        return
    forms = [text]
    if "%" in text or "&" in text:
        forms += list(_variants(text))
    for t in forms:
        if "@" in t:
            for m in _EMAILISH.finditer(t):
                token = m.group(0)
                # whole, and after each URL delimiter: either reading may be the address
                for cut in [0, *(i + 1 for i, ch in enumerate(token.split("@")[0])
                                 if ch in "/?=&#:")]:
                    value = identifiers.normalise_email(token[cut:])
                    if value:
                        yield "email", value
        if PHONE_HINT.search(t):
            for m in _RUNISH.finditer(t):
                for piece in _WIDE_GAP.split(m.group(0)):
                    digits = _NON_DIGIT.sub("", piece)
                    if digits.startswith("00"):
                        digits = digits[2:]
                    for i in range(len(digits) - 6):
                        yield "phone_unparsed", digits[i:]


def replace(text: str, spans: list[Span], mark: Callable[[Span], str]) -> str:
    """``text`` with each of ``spans`` (sorted, not overlapping) replaced by ``mark(span)``."""
    parts, last = [], 0
    for s in spans:
        parts += [text[last:s.start], mark(s)]
        last = s.end
    parts.append(text[last:])
    return "".join(parts)


def rewrite(value: Any, fn: Rewriter, path: tuple[Any, ...] = ()) -> Any:
    """``value`` with every string (object keys too) replaced by ``fn(string, path)``.

    ``path`` is where the string stands (``("messages", 0, "extra", "html")``;
    a key is passed with the path of its object). Objects and lists that do
    not change are returned as they are. Two keys that become equal keep
    both values: the later one gets `` (2)``, `` (3)``... appended.
    """
    if isinstance(value, str):
        return fn(value, path)
    if isinstance(value, list):
        items = [rewrite(v, fn, path + (i,)) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value)) else items
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for k, v in value.items():
            key = fn(k, path) if isinstance(k, str) else k
            new = rewrite(v, fn, path + (k,))
            if key in out:
                n = 2
                while f"{key} ({n})" in out or f"{key} ({n})" in value:
                    n += 1
                key = f"{key} ({n})"
            changed |= key != k or new is not v
            out[key] = new
        return out if changed else value
    return value


def texts(value: Any) -> Iterator[str]:
    """Every string in ``value`` (object keys too), without paths: the fast walk."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from texts(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield k
            yield from texts(v)


def strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every string in ``value`` (object keys too) with where it stands."""
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, path + (i,))
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield k, path
            yield from strings(v, path + (k,))
