"""Platform user ids written bare in a record's ``extra`` objects.

A Slack channel lists its members by id (``extra.channel_info.members``):
someone who never wrote in the channel is named there and nowhere else in
it. Such a string is neither an e-mail address nor a phone number, so
:mod:`vault.redaction` does not see it. The tombstone filter
(:class:`vault.tombstones.Filter`) hashes each id-shaped string of the
``extra`` objects as ``<platform>:<string>``, the form a participant's
platform id is tombstoned in, and replaces those it covers; the erasure
plan finds the stored records holding one with :func:`record_test`.

Only ``extra`` objects are read (the conversation's, each participant's,
message's and attachment's): elsewhere an id is a participant's, which the
filter judges already, or a reference to one.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator

from vault import canonical, redaction

#: what a platform user id looks like: one token, no spaces, at most 128 characters
_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+=/-]{1,127}")


def platform(conv: dict[str, Any]) -> str | None:
    """The record's platform in lower case, as platform ids are tombstoned."""
    name = conv.get("platform")
    return name.lower() if isinstance(name, str) and name else None


def shaped(text: str) -> bool:
    return _SHAPE.fullmatch(text) is not None


def in_extra(path: tuple[Any, ...]) -> bool:
    """Whether a string at ``path`` (as :func:`vault.redaction.rewrite` gives it) is in
    one of the ``extra`` objects :func:`strings` reads."""
    shape = tuple(p for p in path if not isinstance(p, int))
    return (shape[:1] == ("extra",)
            or (shape[:1] in (("participants",), ("messages",)) and shape[1:2] == ("extra",))
            or shape[:3] == ("messages", "attachments", "extra"))


def strings(conv: dict[str, Any]) -> Iterator[str]:
    """The id-shaped strings (object keys too) of the record's ``extra`` objects."""
    for extra in _extras(conv):
        for text in redaction.texts(extra):
            if shaped(text):
                yield text


def _extras(conv: dict[str, Any]) -> Iterator[Any]:
    if "extra" in conv:
        yield conv["extra"]
    for key in ("participants", "messages"):
        for item in conv.get(key) or ():
            if isinstance(item, dict) and "extra" in item:
                yield item["extra"]
    for msg in conv.get("messages") or ():
        for att in (msg.get("attachments") or ()) if isinstance(msg, dict) else ():
            if isinstance(att, dict) and "extra" in att:
                yield att["extra"]


def record_test(platform_ids: Iterable[str]) -> Callable[[str], bool] | None:
    """A test of stored record text: does it hold one of these ids as a whole string?

    ``platform_ids`` are ``platform:id``; the record is canonical JSON, where
    the id stands as a JSON string. Over-inclusive (any field, any platform):
    the filter decides.
    """
    quoted = sorted({canonical.dumps(i.partition(":")[2]).decode("utf-8")
                     for i in platform_ids if shaped(i.partition(":")[2])})
    if not quoted:
        return None
    return lambda text: any(q in text for q in quoted)
