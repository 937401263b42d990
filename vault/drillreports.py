"""Kept restore-drill reports, and what ``vault status`` says of them.

Reports are signed by the vault and kept in ``H/reports/`` (written by
:mod:`vault.drill`); :func:`reports` reads them back, each verified against
the vault's own key, so a report edited by hand shows as invalid.

``vault status`` (:data:`STATUS_CHECKS`) warns when no drill passed within
``[alerts] drill_interval_days`` (default 90; 0 turns the check off), is
critical when the newest drill failed, and warns when the state file is
missing or out of date.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from vault import signed, statecounts, statefile, timestamps
from vault.errors import ChatvaultError, ConfigError
from vault.home import Home

KIND = "drill-report"
PREFIX = "drill-"


def reports(home: Path) -> list[dict[str, Any]]:
    """Every kept drill report, newest first, each verified against the vault's own key."""
    home = Path(home)
    own = statefile.OwnKey(Home(home).public())
    out = []
    for path in sorted((home / "reports").glob(f"{PREFIX}*.json"), reverse=True):
        try:
            doc = signed.load(path)
            signed.verify(doc, own, "vault", KIND, str(path))
            out.append({**summary(doc["body"]), "file": path.name, "valid": True})
        except ChatvaultError as exc:
            out.append({"file": path.name, "valid": False, "error": exc.code,
                        "passed": False, "at": None})
    return sorted(out, key=lambda r: r["at"] or "", reverse=True)


def summary(body: dict[str, Any]) -> dict[str, Any]:
    """The line ``drill list`` shows for one report."""
    c = body.get("counts", {})
    return {"drill_id": body.get("drill_id"), "at": body.get("at"),
            "passed": bool(body.get("passed")), "mode": body.get("mode"),
            "bundles": len(body.get("bundles", [])), "records": c.get("records", 0),
            "compared": c.get("compared", 0), "mismatches": body.get("mismatch_count", 0),
            "erased": c.get("erased", 0), "purged": c.get("purged", 0),
            "restricted": c.get("restricted", 0),
            "recovery_seconds": body.get("recovery_seconds"),
            "total_seconds": body.get("total_seconds")}


# -- vault status ------------------------------------------------------------------------------

def _interval(ctx: Any) -> int:
    value = ctx.cfg.raw.get("alerts", {}).get("drill_interval_days", 90)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3660:
        raise ConfigError(f"key 'alerts.drill_interval_days': expected whole days 0..3660, "
                          f"got {value!r}", path=ctx.cfg.path)
    return value


def check_drill(ctx: Any) -> list[Any]:
    """WARNING: no drill passed within the interval; CRITICAL: the newest one failed."""
    from vault.vaultstatus import CRITICAL, OK, WARNING, Finding

    days = _interval(ctx)
    if not days:
        return []
    found = [r for r in reports(ctx.home) if r["valid"]]
    newest = found[0] if found else None
    passed = [r for r in found if r["passed"]]
    data = {"interval_days": days, "last_drill_at": newest and newest["at"],
            "last_passed_at": passed[0]["at"] if passed else None}
    if newest is not None and not newest["passed"]:
        return [Finding(CRITICAL, "drill", f"the last restore drill ({newest['at']}) FAILED "
                        f"with {newest['mismatches']} mismatch(es): see 'chatvault drill "
                        "list' and H/reports/", data)]
    if not passed or ctx.now - timestamps.parse(passed[0]["at"]) > timedelta(days=days):
        when = f"last passed {passed[0]['at']}" if passed else "none has ever passed"
        return [Finding(WARNING, "drill", f"no restore drill passed in the last {days} days "
                        f"({when}): run 'chatvault drill'", data)]
    return [Finding(OK, "drill", f"restore drill passed at {passed[0]['at']} (recovery "
                    f"{passed[0]['recovery_seconds']:.1f} s)", data)]


def check_state_file(ctx: Any) -> list[Any]:
    """WARNING when the state file is missing or out of date, CRITICAL when it does not verify."""
    from vault.vaultstatus import CRITICAL, OK, WARNING, Finding

    info = statefile.describe(ctx.home)
    lost = statecounts.behind(Path(info["path"]), statecounts.held(ctx.conn))
    if lost:
        said = ", ".join(f"{t} {was} there, {has} here" for t, (was, has) in sorted(lost.items()))
        return [Finding(CRITICAL, "state_file", f"the store is older than the state file "
                        f"({said}): a backup put back or a store made anew; every command "
                        "that uses it refuses. Rebuild from the archive: 'chatvault vault "
                        "rebuild --into NEWHOME', then use NEWHOME", {**info, "behind": lost})]
    if info.get("problem"):
        return [Finding(CRITICAL, "state_file", f"the state file {info['path']} does not "
                        f"verify ({info['problem']}): a rebuild could not restore tombstones, "
                        "holds and cases from it. The store still holds them: run "
                        "'chatvault vault state-save' to write it again (the damaged file is "
                        "replaced), and check the disk", info)]
    held = ctx.conn.execute("SELECT count(*) FROM bundles").fetchone()[0]
    if not info["exists"]:
        if not held:
            return []
        return [Finding(WARNING, "state_file", f"no state file at {info['path']}: the archive "
                        "alone cannot restore tombstones, holds and cases, and audit entries "
                        "cut off the end of the log would not be seen; run "
                        "'chatvault vault state-save'", info)]
    if not info["current"]:
        return [Finding(WARNING, "state_file", "the state file is out of date (the store or "
                        "config.toml changed since it was saved); run 'chatvault vault "
                        "state-save'", info)]
    return [Finding(OK, "state_file", f"state file current (#{info['sequence']})", info)]


STATUS_CHECKS = [check_drill, check_state_file]
