"""Full-text search over message text: one folding for the index and its queries.

The index (``messages_fts``, FTS5 with the ``unicode61`` tokenizer and no
diacritic removal of its own) holds each message's text after
:func:`index_text`; a query goes through the very same function, so a match
never depends on how either side was written:

* NFKC, case folding, accents removed from Latin, Greek and Cyrillic
  letters (:func:`vault.identifiers.fold_text`): "Zoë" in NFC or NFD,
  "ZOE" and "zoe" are one word; combining marks never split a word;
* every CJK character is a token of its own, so a two-character query is
  a phrase of two unigrams and finds any substring (a trigram index never
  matches fewer than three characters);
* e-mail addresses are phrases of their parts (``ana.example@example.org``
  is ana example example org, adjacent), and the ``ids`` column holds the
  E.164 digits of phone numbers written in the message, so "+44 7700
  900123" finds "07700 900123" once the vault's region says what 07700 means.

User text never reaches MATCH as syntax: every word is passed as a quoted
string. A query with nothing to search for is an error, not "no results".
"""

from __future__ import annotations

import functools
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from typing import Any

from vault import identifiers
from vault.errors import QueryFailed, UsageError

# CJK ideographs, kana and hangul syllables; the first pattern is BMP-only
# so the regex engine tests it with a bitmap.
_CJK = re.compile("([\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  "\uac00-\ud7af\uf900-\ufaff])")
_CJK_FAR = re.compile("([\U00020000-\U0003134f])")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _char_class(codes: list[int]) -> str:
    """A regex character class body for a sorted list of code points, as ranges."""
    out, start, prev = [], -2, -2
    for c in codes + [-2]:
        if c == prev + 1:
            prev = c
            continue
        if start >= 0:
            width = 4 if prev < 0x10000 else 8
            esc = "\\u" if width == 4 else "\\U"
            out.append(f"{esc}{start:0{width}x}" + (f"-{esc}{prev:0{width}x}"
                                                     if prev != start else ""))
        start = prev = c
    return "".join(out)


@functools.cache
def _accents() -> tuple[re.Pattern[str], frozenset[str]]:
    """(marks after a Latin, Greek or Cyrillic base; any supplementary-plane mark).

    Built once from the Unicode database so that removing accents is one
    regex substitution in C instead of a Python loop over every character.
    The first pattern only holds Basic Multilingual Plane characters, which
    the regex engine tests with a bitmap; the rare texts holding a combining
    mark beyond it take the reference loop instead.
    """
    marks = [c for c in range(0x110000) if unicodedata.combining(chr(c))]
    mark_set = set(marks)
    blocks = getattr(identifiers, "_ACCENTED_BLOCKS")
    bases = [c for lo, hi in blocks for c in range(lo, hi + 1) if c not in mark_set]
    bmp_marks = [c for c in marks if c < 0x10000]
    far_marks = [c for c in marks if c >= 0x10000]
    # marks after such a base, or at the very start (see identifiers.fold_text)
    strip = re.compile(f"(?:^|(?<=[{_char_class(bases)}]))[{_char_class(bmp_marks)}]+")
    return strip, frozenset(chr(c) for c in far_marks)


def fold(text: str) -> str:
    """:func:`vault.identifiers.fold_text`, computed with C-speed steps.

    ASCII folds to its lower case. Anything else: NFKC, case fold, NFD,
    accents off Latin, Greek and Cyrillic letters, NFC, as the identifiers
    module defines it; the result is the same string (a property test holds
    the two equal).
    """
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    strip, far = _accents()
    if not far.isdisjoint(_ASTRAL.findall(decomposed)):
        return identifiers.fold_text(text)
    return unicodedata.normalize("NFC", strip.sub("", decomposed))


def index_text(text: str) -> str:
    """Folded text with every CJK character made a token of its own.

    CJK writing has no spaces, so ``unicode61`` would index a whole run as
    one token and a two-character word inside it could never match.
    Spacing each character makes a query of n characters a phrase of n
    unigrams, which matches any substring.
    """
    folded = fold(text)
    if folded.isascii():
        return folded
    spaced = _CJK.sub(r" \1 ", folded)
    return _CJK_FAR.sub(r" \1 ", spaced) if _ASTRAL.search(spaced) else spaced


MAX_QUERY_CHARS = 1000
MAX_QUERY_TERMS = 32
_TERMS = re.compile(r'"([^"]*)"|(\S+)')
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PHONE_QUERY = re.compile(r"^\+?[\d\s().\-/]{6,40}$")


@dataclass(frozen=True)
class Hit:
    source: str
    conversation_id: str
    message_id: str
    at: str
    text: str
    rank: float


def match_expression(query: str, region: str | None = None) -> str:
    """The FTS5 MATCH expression for what a person typed; user text only ever quoted.

    Each whitespace-separated word (or "quoted phrase") is folded like the
    index and passed as one quoted string, which FTS5 tokenises into a
    phrase: ``ana.example@example.org`` becomes the phrase ana example
    example org; CJK text becomes a phrase of single characters. Words are
    ANDed. A query that is a phone number also matches its E.164 form.
    """
    if not isinstance(query, str) or not query.strip():
        raise UsageError("empty search query")
    if len(query) > MAX_QUERY_CHARS:
        raise UsageError(f"search query longer than {MAX_QUERY_CHARS} characters")
    phrases: list[str] = []
    # Control characters are never part of a word (and NUL would end FTS5's string).
    for quoted, word in _TERMS.findall(_CONTROL.sub(" ", query)):
        folded = index_text(quoted or word)
        if any(ch.isalnum() for ch in folded):
            phrases.append('"' + folded.replace('"', '""') + '"')
    if not phrases:
        raise UsageError(f"search query {query[:60]!r} has no letters or digits to search for")
    if len(phrases) > MAX_QUERY_TERMS:
        raise UsageError(f"search query has more than {MAX_QUERY_TERMS} words")
    expr = " AND ".join(phrases)
    if _PHONE_QUERY.match(query.strip()):
        e164 = identifiers.normalise_phone(query, region)
        if e164:
            expr = f'(ids : "{e164[1:]}") OR ({expr})'
    return expr


def search(conn: sqlite3.Connection, query: str, source: str | None = None,
           limit: int = 50, region: str | None = None) -> list[Hit]:
    """Messages matching ``query``, best first (bm25)."""
    if not 1 <= limit <= 10000:
        raise UsageError("limit must be between 1 and 10000")
    expr = match_expression(query, region)
    sql = ("SELECT c.source, c.conversation_id, m.message_id, m.at, m.text, "
           "bm25(messages_fts) AS rank FROM messages_fts "
           "JOIN messages m ON m.id = messages_fts.rowid "
           "JOIN conversations c ON c.id = m.conversation WHERE messages_fts MATCH ?")
    params: list[Any] = [expr]
    if source is not None:
        sql += " AND c.source = ?"
        params.append(source)
    sql += " ORDER BY rank, m.at, m.id LIMIT ?"
    params.append(limit)
    try:
        return [Hit(*row) for row in conn.execute(sql, params)]
    except sqlite3.OperationalError as exc:
        # Every word reaches MATCH quoted, so this is the store, not the query:
        # say so, never answer "no results".
        from vault import store

        if store.is_busy(exc):
            raise
        if store.is_damaged(exc):
            raise store.damaged_error(exc, store.file_of(conn) or "store.db") from None
        raise QueryFailed(f"the search could not be answered ({store.error_text(exc)}); "
                          "nothing can be concluded from it: check the store ('chatvault "
                          "vault status')") from None


_WORD = re.compile(r"\w+")


def snippet(text: str, query: str, width: int = 160) -> str:
    """A window of the original ``text`` around the first word the query names."""
    words = set(index_text(query).split())
    start = 0
    for m in _WORD.finditer(text):
        if words.intersection(index_text(m.group()).split()):
            start = m.start()
            break
    left = max(0, start - width // 3)
    right = min(len(text), left + width)
    body = " ".join(text[left:right].split())
    return ("…" if left else "") + body + ("…" if right < len(text) else "")


@dataclass
class ConversationHit:
    """A conversation that matched, its best rank and its matching messages."""

    source: str
    conversation_id: str
    rank: float
    messages: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "source": self.source,
                "rank": self.rank, "messages": self.messages}


def search_conversations(conn: sqlite3.Connection, query: str, source: str | None = None,
                         limit: int = 50, region: str | None = None
                         ) -> tuple[list[ConversationHit], bool]:
    """Matching conversations, best first, each with its messages' snippets, and
    whether more may match than were returned (``limit`` reached, or the message
    hits read were cut off): a cut list must not read as all there is."""
    cap = min(10000, limit * 20)
    hits = search(conn, query, source, cap, region)
    more = len(hits) == cap
    out: dict[tuple[str, str], ConversationHit] = {}
    for h in hits:
        item = out.get((h.source, h.conversation_id))
        if item is None:
            if len(out) >= limit:
                more = True
                continue
            item = out[(h.source, h.conversation_id)] = ConversationHit(
                h.source, h.conversation_id, h.rank, [])
        if len(item.messages) < 5:
            item.messages.append({"message_id": h.message_id, "at": h.at,
                                  "snippet": snippet(h.text, query)})
    return list(out.values()), more


