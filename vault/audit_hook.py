"""A narrow door to the audit log for code that runs on both sides.

Key changes happen on exporters and vaults alike; only a vault has an audit
log (:mod:`vault.audit`, in ``store.db``). This records the event there when
the home is a vault with a store, and does nothing elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def record(home: Path, action: str, *, target: str | None = None,
           detail: dict[str, Any] | None = None, purpose: str | None = None) -> None:
    if not (Path(home) / "store.db").exists():
        return
    try:
        from vault import audit
    except ImportError:
        return
    audit.append_to_home(Path(home), action, target=target, detail=detail, purpose=purpose)
