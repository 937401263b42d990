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

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from vault import identifiers
from vault.errors import UsageError

_NON_ASCII_RUN = re.compile(r"([\x00-\x7f]?[^\x00-\x7f]+)")
_CJK = re.compile("([\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f])")


def fold(text: str) -> str:
    """:func:`vault.identifiers.fold_text`, fast for the ASCII parts of a text.

    ASCII folds to its lower case; only runs of other characters (with the
    ASCII letter before them, which a combining mark may belong to) go
    through the full Unicode folding. The result is the same string.
    """
    if text.isascii():
        return text.lower()
    parts = _NON_ASCII_RUN.split(text)
    return "".join(identifiers.fold_text(p) if i % 2 else p.lower()
                   for i, p in enumerate(parts))


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
    return _CJK.sub(r" \1 ", folded)


MAX_QUERY_CHARS = 1000
MAX_QUERY_TERMS = 32
_TERMS = re.compile(r'"([^"]*)"|(\S+)')
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
    for quoted, word in _TERMS.findall(query):
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
        raise UsageError(f"search query could not be run ({exc})") from None


