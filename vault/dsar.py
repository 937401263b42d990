"""Data subject access requests (GDPR Art. 12(3), 15, 20): cases and packages.

A **case** records when a request was received and when it is due: the
same calendar day one month later, or the last day of that month when it is
shorter (31 January -> 29 February in a leap year). It may be extended once
or twice, by up to two more months in all, with a reason (Art. 12(3)).
``vault status`` warns about open cases due within ``[alerts]
dsar_warning_days`` and goes critical for overdue ones (:data:`STATUS_CHECKS`).

A **package** (:func:`export`) holds, for the case's subject:

* ``data.json``: every conversation found by exact identifiers (schema:
  ``vault/schemas/dsar-package.schema.json``, copied into the package);
* ``index.html`` and ``conversations/NNNN.html``: printable transcripts
  that load nothing from outside and run no script (:mod:`vault.dsarhtml`);
* ``attachments/``: files the subject sent or received;
* ``manifest.json``: SHA-256 and size of every other file, and every
  redaction made (what kind, where; never the redacted value).

Fairness to others (Art. 15(4)): other customers' e-mail addresses, phone
numbers, names and ids are redacted in every field the package shows
(title, channel, status, ids, text, attachment names; :mod:`vault.dsarpack`),
agents' names too when ``[dsar] redact_agent_names`` is set; never the
subject's own, including identifiers held on the same participant record as
one searched with (listed as ``subject.linked``, not searched with), and
ids are never read as phone numbers. Where the subject is only mentioned,
only the messages that mention them are included. Name-only matches are not
put in the package: they are returned to the operator as ``needs_review``.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from vault import atomic, audit, statehook, store, timestamps, vaultconfig
from vault.errors import UsageError
from vault.subjects import Subject, VaultHandle

MAX_EXTENSION_MONTHS = 2
SCHEMA_ID = "chatvault/dsar-package/v1"
#: Art. 15(1)(a)-(h), as keys of the ``[processing]`` register
REGISTER_KEYS = vaultconfig.REGISTER_KEYS


def add_months(day: date, months: int) -> date:
    """Same calendar day ``months`` later, or the last day of a shorter month."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def parse_date(text: str, what: str = "--received") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{what}: expected a date as YYYY-MM-DD, got {text!r}") from None


def today() -> date:
    return datetime.now(timestamps.UTC).date()


@dataclass
class Case:
    id: str
    received: str
    due: str
    extended_due: str | None
    extension_reason: str | None
    status: str
    note: str | None
    opened_at: str
    opened_by: str
    closed_at: str | None
    exported_at: str | None

    @property
    def effective_due(self) -> str:
        return self.extended_due or self.due

    def days_left(self, on: date) -> int:
        return (date.fromisoformat(self.effective_due) - on).days

    def as_dict(self, on: date | None = None) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["case_id"] = out.pop("id")
        out["effective_due"] = self.effective_due
        if self.status == "open":
            left = self.days_left(on or today())
            out["days_left"], out["overdue"] = left, left < 0
        return out


_COLUMNS = ("id, received, due, extended_due, extension_reason, status, note, opened_at, "
            "opened_by, closed_at, exported_at")


def get(conn: Any, case_id: str) -> Case:
    row = conn.execute(f"SELECT {_COLUMNS} FROM dsar_cases WHERE id = ?",
                       (case_id,)).fetchone()
    if row is None:
        raise UsageError(f"no DSAR case {case_id!r} (see 'chatvault dsar list')")
    return Case(*row)


def subject_of(conn: Any, case_id: str) -> Subject:
    """The case's identifiers (those not yet replaced by an erasure)."""
    s = Subject()
    for kind, value in conn.execute("SELECT kind, value FROM dsar_subjects WHERE case_id = ? "
                                    "AND erased = 0 ORDER BY rowid", (case_id,)):
        s.bucket(kind).append(value)
    return s


def open_case(v: VaultHandle, received: date, subject: Subject,
              note: str | None = None) -> Case:
    """Record a new request; its id is ``DSAR-<year received>-<n>``."""
    if received > today():
        raise UsageError(f"--received {received} is in the future")
    now, who = timestamps.now_utc(), audit.operator()
    due = add_months(received, 1).isoformat()
    with store.transaction(v.conn):
        prefix = f"DSAR-{received.year}-"
        n = v.conn.execute("SELECT count(*) FROM dsar_cases WHERE id LIKE ?",
                           (prefix + "%",)).fetchone()[0]
        case_id = f"{prefix}{n + 1:04d}"
        v.conn.execute("INSERT INTO dsar_cases (id, received, due, status, note, opened_at, "
                       "opened_by) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                       (case_id, received.isoformat(), due, note, now, who))
        v.conn.executemany("INSERT INTO dsar_subjects (case_id, kind, value) VALUES (?, ?, ?)",
                           [(case_id, k, val) for k, val in subject.pairs()])
        audit.append(v.conn, "dsar.open", target=f"case:{case_id}",
                     detail={"received": received.isoformat(), "due": due,
                             "identifiers": len(subject.pairs())})
    statehook.changed(v.home, "dsar")
    return get(v.conn, case_id)


def extend(v: VaultHandle, case_id: str, months: int, reason: str) -> Case:
    """Extend the deadline (Art. 12(3)): at most two more months in all."""
    case = get(v.conn, case_id)
    if case.status != "open":
        raise UsageError(f"{case_id} is {case.status}")
    if not reason.strip():
        raise UsageError("--reason is required: the subject must be told why")
    received = date.fromisoformat(case.received)
    used = 0
    if case.extended_due:
        ext = date.fromisoformat(case.extended_due)
        used = (ext.year - received.year) * 12 + ext.month - received.month - 1
    if months < 1 or used + months > MAX_EXTENSION_MONTHS:
        raise UsageError(f"a case may be extended by at most {MAX_EXTENSION_MONTHS} months "
                         f"in all ({used} used)")
    new_due = add_months(received, 1 + used + months).isoformat()
    with store.transaction(v.conn):
        v.conn.execute("UPDATE dsar_cases SET extended_due = ?, extension_reason = ? "
                       "WHERE id = ?", (new_due, reason, case_id))
        audit.append(v.conn, "dsar.extend", target=f"case:{case_id}", purpose=reason,
                     detail={"due": new_due, "months": months})
    statehook.changed(v.home, "dsar")
    return get(v.conn, case_id)


def close(v: VaultHandle, case_id: str, note: str | None = None) -> Case:
    case = get(v.conn, case_id)
    if case.status != "open":
        raise UsageError(f"{case_id} is already {case.status}")
    with store.transaction(v.conn):
        v.conn.execute("UPDATE dsar_cases SET status = 'closed', closed_at = ?, closed_by = ?, "
                       "close_note = ? WHERE id = ?",
                       (timestamps.now_utc(), audit.operator(), note, case_id))
        audit.append(v.conn, "dsar.close", target=f"case:{case_id}", purpose=note)
    statehook.changed(v.home, "dsar")
    return get(v.conn, case_id)


def cases(conn: Any, include_closed: bool = False) -> list[Case]:
    where = "" if include_closed else " WHERE status = 'open'"
    return [Case(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM dsar_cases{where} "
                                           "ORDER BY coalesce(extended_due, due), id")]


# -- the package ---------------------------------------------------------------------------

def export(v: VaultHandle, case_id: str, out: Path, *,
           seal_to: Path | None = None) -> dict[str, Any]:
    """Write the case's package into ``out/<case_id>/`` (or a sealed bundle).

    Everything that can be checked is checked before anything is written
    (the case, its identifiers, ``out``, the key to seal to); a failure
    later removes what this call created, ``out`` included.
    """
    from vault import dsarpack, keys

    case = get(v.conn, case_id)
    subject = subject_of(v.conn, case_id)
    if not subject.exact():
        raise UsageError(f"{case_id} has no e-mail, phone or id left to search with "
                         "(erased, or only a name or a number that is not a possible phone "
                         "number was given)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    target = out / case_id
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} already exists and is not empty")
    if seal_to is not None:
        keys.load_public(Path(seal_to))
    made = _make_folder(out)
    work = Path(tempfile.mkdtemp(prefix=".dsar-", dir=out)) if seal_to else target
    try:
        result = dsarpack.build(v, case, subject, work)
        if seal_to is not None:
            result["sealed"] = str(dsarpack.seal(v, case_id, work, out, seal_to))
        else:
            result["path"] = str(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if made:
            shutil.rmtree(made[0], ignore_errors=True)
        raise
    if seal_to is not None:
        shutil.rmtree(work, ignore_errors=True)
    with store.transaction(v.conn):
        v.conn.execute("UPDATE dsar_cases SET exported_at = ? WHERE id = ?",
                       (timestamps.now_utc(), case_id))
        audit.append(v.conn, "dsar.export", target=f"case:{case_id}", purpose=case_id,
                     detail={"conversations": result["conversations"],
                             "files": result["files"], "redactions": result["redactions"],
                             "sealed": seal_to is not None})
    statehook.changed(v.home, "dsar")
    return result


def _make_folder(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; the ones created, outermost first."""
    missing = [p for p in [path, *path.parents] if not p.exists()][::-1]
    atomic.private_dir(path)  # the package is personal data: 0700, whatever the umask
    return missing


def register(v: VaultHandle) -> dict[str, Any]:
    """The ``[processing]`` register (Art. 15(1)(a)-(h)), checked when the config loaded."""
    return dict(v.cfg.processing)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while part := fh.read(1024 * 1024):
            digest.update(part)
    return digest.hexdigest()


_SAFE_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def safe_extension(name: Any) -> str:
    """A file extension taken from hostile input only when it is plainly harmless."""
    if not isinstance(name, str):
        return ""
    m = _SAFE_EXT.search(name)
    return m.group(0).lower() if m else ""


# -- vault status ---------------------------------------------------------------------

def check_dsar(ctx: Any) -> list[Any]:
    """WARNING for open cases due within ``dsar_warning_days``, CRITICAL when overdue."""
    from vault.vaultstatus import CRITICAL, WARNING, Finding

    warn_days = ctx.cfg.dsar_warning_days
    on = ctx.now.date()
    out = []
    for case in cases(ctx.conn):
        left = case.days_left(on)
        data = {"case_id": case.id, "due": case.effective_due, "days_left": left}
        if left < 0:
            out.append(Finding(CRITICAL, "dsar", f"DSAR {case.id} is OVERDUE by {-left} "
                               f"day(s) (due {case.effective_due}): answer it or record an "
                               "extension", data))
        elif left <= warn_days:
            out.append(Finding(WARNING, "dsar", f"DSAR {case.id} is due in {left} day(s) "
                               f"({case.effective_due})", data))
    return out


STATUS_CHECKS = [check_dsar]
