"""The daemon's logging: its own stderr handler, in the journal's form under systemd.

INFO by default, ``CHATVAULT_LOG`` for another level (``DEBUG`` for detail).
When ``$JOURNAL_STREAM`` says stderr is the journal, each line starts with
its syslog priority (``<4>`` for a warning) and carries no time of its own,
which the journal stores; otherwise lines carry the time and the level.
The level policy itself is in :mod:`vault.daemon`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


class JournalFormatter(logging.Formatter):
    """``<priority>name: message``: the journal stores the priority, and the time."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                 logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = self._PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def configure() -> Any:
    """The daemon's own stderr handler on the ``vault`` logger; returns an undo."""
    logger = logging.getLogger("vault")
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
    level_name = os.environ.get("CHATVAULT_LOG", "INFO").upper()
    old = (logger.level, logger.propagate)
    logger.setLevel(getattr(logging, level_name, logging.INFO))
    logger.propagate = False
    logger.addHandler(handler)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]

    return restore
