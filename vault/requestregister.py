"""A home's request register: what it asked, what came back, what still waits.

``H/state/requests.json`` (written atomically, one writer at a time under
``H/state/requests.lock``) holds per request its id, action, file name,
times, the digest of its body, the vaults expected to answer (those its
parameters were sealed to), and per vault the answer collected. No
parameter is kept there: it names people. :mod:`vault.ask` writes an entry
when it asks and when a request is resolved by hand, :mod:`vault.answers`
when it collects; :func:`status` reads it for ``request status``.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from vault import atomic, filelock, timestamps
from vault.errors import UsageError
from vault.home import Home

STATE_FILE = "requests.json"
FINAL = ("done", "refused", "failed")


def _state_path(home: Path) -> Path:
    return Path(home) / "state" / STATE_FILE


@contextlib.contextmanager
def state(home: Path) -> Iterator[dict[str, Any]]:
    """The state, locked for the block, saved atomically when the block succeeds."""
    folder = Path(home) / "state"
    folder.mkdir(mode=0o700, exist_ok=True)
    with filelock.exclusive(folder / "requests.lock"):
        current = load_state(home)
        yield current
        atomic.write_bytes(_state_path(home), json.dumps(current, indent=1, sort_keys=True)
                           .encode("utf-8") + b"\n", mode=0o600)


def load_state(home: Path) -> dict[str, Any]:
    path = _state_path(home)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1, "requests": {}}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the requests state ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("requests"), dict):
        raise UsageError(f"{path}: not a requests state file")
    return state


def status(home: Path, *, every: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Requests not yet answered by every vault addressed; WARNING when one has expired
    or its answer came damaged (the vault answers once: a new request is needed)."""
    h = Home(Path(home)).require()
    moment = now or datetime.now(timestamps.UTC)
    rows = []
    for rid, entry in sorted(load_state(h.path)["requests"].items(),
                             key=lambda kv: kv[1]["created_at"]):
        answers = entry["answers"]
        final = [v for v in entry["vaults"] if answers.get(v, {}).get("status") in FINAL]
        state = ("answered" if len(final) == len(entry["vaults"]) else
                 "resolved" if entry.get("resolved") else "partly answered" if final else
                 "pending approval" if any(a["status"] == "pending" for a in answers.values())
                 else "waiting")
        if state in ("answered", "resolved") and not every:
            continue
        expired = timestamps.parse(entry["expires_at"]) <= moment
        if entry.get("damaged") and state not in ("answered", "resolved"):
            state = "answer damaged"
        rows.append({"request_id": rid, "action": entry["action"], "state": state,
                     "created_at": entry["created_at"], "expires_at": entry["expires_at"],
                     "expired": expired and state not in ("answered", "resolved"),
                     "summary": entry["summary"], "resolved": entry.get("resolved"),
                     "file": entry["file"], "answers": answers,
                     "waiting_for": [v for v in entry["vaults"] if v not in final]})
    level = 1 if any(r["expired"] or r["state"] == "answer damaged" for r in rows) else 0
    return {"status": ("OK", "WARNING")[level], "exit_code": level, "requests": rows}
