"""Receipts delivered onto the medium a bundle came from, after its ingest.

One receipt per ingest outcome (:func:`deliver`), except
where this vault's receipt for the same bytes already says the same (an
``ingested`` receipt also stands for a later ``duplicate``), so a stick
inserted again is not rewritten; a ``quarantined`` receipt whose file has
left the stick is removed (:func:`vault.quarantine.stale_receipts`).
``H/receipts/`` keeps a copy of each receipt the first time the vault gives
it, not again for bytes it recognised without copying them.
With ``[daemon] delete_ingested``, a bundle whose receipt says ingested or
duplicate is removed from the stick's outbox once its receipt is there.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vault import atomic, media, quarantine, receipts

if TYPE_CHECKING:
    from vault.ingest import Outcome

log = logging.getLogger("vault.ingest")  # the name operators filter ingest logs by


def deliver(media_root: Path, outcomes: list[Outcome], *,
            delete_ingested: bool = False) -> list[Path]:
    """Write each outcome's receipt into ``<media>/chatvault/receipts/`` (module doc).

    Returns the receipts written (not those left as they were). With
    ``delete_ingested``, a bundle whose receipt says ingested or duplicate
    is then removed from the outbox, but only if the file there still has
    the hash that was ingested.
    """
    written = []
    for out in outcomes:
        if out.receipt is None:
            continue
        path = receipts.already_said(Path(media_root), out.receipt)
        if path is None:
            path = receipts.write(Path(media_root), out.receipt)
            written.append(path)
        out.receipt_paths.append(str(path))
        if delete_ingested and out.status in ("ingested", "duplicate"):
            bundle = media.folder(Path(media_root), media.OUTBOX) / out.bundle_file
            if bundle.is_file() and not bundle.is_symlink() and _sha256(bundle) == out.sha256:
                bundle.unlink()
                log.info("removed %s from the media (receipt written)", out.bundle_file)
    signer = [o.receipt["signatures"][-1]["key"] for o in outcomes if o.receipt][:1]
    for stale in quarantine.stale_receipts(Path(media_root), base64.b64decode(signer[0])) \
            if signer else []:
        try:
            stale.unlink()
        except OSError as exc:
            raise atomic.media_error(exc, stale) from exc
        log.info("removed %s from the media: the file it refused is no longer there",
                 stale.name)
    return written


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
