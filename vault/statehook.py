"""A narrow door to the vault's state file for code that changes vault state.

Tombstones (and the key that hashes them), legal holds, DSAR cases,
restrictions and retention stamps cannot be recovered from the bundle
archive, so after every change to them the vault writes a signed, encrypted
state file beside the archive (:mod:`vault.statefile`). Code that changes
such state calls :func:`changed` once its transaction has committed; this
keeps the GDPR modules independent of how the state file is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def changed(home: Path, what: str) -> None:
    """Write the state file again after a committed change to ``what``."""
    try:
        from vault import statefile
    except ImportError:
        return
    statefile.write(Path(home), reason=what)
