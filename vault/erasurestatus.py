"""``vault status`` on erasures: incomplete, interrupted, or waiting for a second approver."""

from __future__ import annotations

from typing import Any


def check_erasures(ctx: Any) -> list[Any]:
    """CRITICAL for an erasure left incomplete; WARNING for one interrupted mid-scrub or
    waiting for its second approver."""
    from vault.vaultstatus import CRITICAL, WARNING, Finding

    out = []
    for eid, at, who in ctx.conn.execute("SELECT id, requested_at, requested_by FROM "
                                         "erasures WHERE status = 'pending' ORDER BY id"):
        # Art. 17 asks for erasure without undue delay: a request no one approves is said
        out.append(Finding(WARNING, "erasure", f"erasure {eid} waits for a second approver "
                           f"since {at[:10]} (asked by {who}): another operator runs "
                           f"'chatvault erase approve {eid}'",
                           {"erasure_id": eid, "status": "pending", "requested_at": at}))
    for eid, status in ctx.conn.execute("SELECT id, status FROM erasures WHERE status IN "
                                        "('incomplete', 'scrubbing') ORDER BY id"):
        data = {"erasure_id": eid, "status": status}
        if status == "incomplete":
            out.append(Finding(CRITICAL, "erasure", f"erasure {eid} is INCOMPLETE: traces of "
                               "the subject remain in the store; see 'chatvault erase list' "
                               "and run the same erasure again", data))
        else:
            out.append(Finding(WARNING, "erasure", f"erasure {eid} was interrupted before "
                               "its byte scan (or is running now); if no erase is running, "
                               "run the same erasure again", data))
    return out


STATUS_CHECKS = [check_erasures]
