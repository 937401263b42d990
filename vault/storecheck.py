"""``vault status``: is the store file whole? SQLite's ``quick_check``, at most once an hour.

A page damaged on disk goes unnoticed by the status's own queries, which
read a few tables through their indexes; the commands that do touch it
(``subject find``, ``search``) then fail on the day a request comes. The
check reads every page (seconds per gigabyte), so it runs when the last one
is older than :data:`INTERVAL` and its result is kept in
``H/store-check.json`` (not in the store: a damaged store may not take a
write). A monitoring run every few minutes thus costs one full read an
hour; a status run right after damage may still show the last good result
for up to that hour.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from vault import atomic, store, timestamps
from vault.errors import MediaError, StoreDamaged

FILE_NAME = "store-check.json"
INTERVAL = timedelta(hours=1)


def _last(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("at"), str) else None


def _due(last: dict[str, Any], now: Any) -> bool:
    if last.get("problem"):
        return True  # a damaged store is checked every time: a rebuild put in place heals it
    try:
        return now - timestamps.parse(last["at"]) >= INTERVAL
    except ValueError:  # TimestampError too
        return True


def check_store_integrity(ctx: Any) -> list[Any]:
    """CRITICAL when ``quick_check`` finds the store damaged; OK with when it last looked."""
    from vault.vaultstatus import CRITICAL, OK, Finding

    last = _last(ctx.home)
    if last is None or _due(last, ctx.now):
        problem = None
        try:
            store.check_integrity(ctx.conn, ctx.home / store.FILE_NAME)
        except StoreDamaged as exc:
            problem = exc.detail
        last = {"at": timestamps.format_utc(ctx.now), "problem": problem}
        try:
            atomic.write_bytes(ctx.home / FILE_NAME, json.dumps(last).encode())
        except (OSError, MediaError):
            pass  # a read-only status (a monitoring user): checked again next time
    if last.get("problem"):
        return [Finding(CRITICAL, "store_integrity", str(last["problem"]), last)]
    return [Finding(OK, "store_integrity", f"store file whole (checked {last['at']})", last)]


STATUS_CHECKS = [check_store_integrity]
