"""``chatvault erase``: erasure (Art. 17) that stays erased; four-eyes approval; the list.

Thin, as the other data-subject commands (:mod:`vault.cli.gdpr`, whose
options it shares): the plan, the refusal under a legal hold, the request,
its execution and the byte scan are :mod:`vault.erasure`'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, emit_json, say
from vault.cli.gdpr import (CustOpt, EmailOpt, IdOpt, Many, PhoneOpt, normal_case_id,
                            subject_of, vault_at)

erase_app = typer.Typer(invoke_without_command=True)


@erase_app.callback()
def erase_cmd(ctx: typer.Context,
              case: Annotated[Optional[str], typer.Option(
                  "--case", callback=normal_case_id, help="A DSAR case")] = None,
              email: EmailOpt = None, phone: PhoneOpt = None, ids: IdOpt = None,
              customer_id: CustOpt = None,
              reason: Annotated[Optional[str], typer.Option("--reason")] = None,
              dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
              yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
              home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Erase a subject (Art. 17); 'erase approve ID' and 'erase list' too."""
    if ctx.invoked_subcommand is not None:
        return
    from vault import erasure
    from vault.errors import UsageError

    with vault_at(home) as v:
        if case:
            subject = _with_case(v, case, email, phone, ids, customer_id)
        else:
            subject = subject_of(v, email, phone, None, ids, customer_id)
        if not subject.exact():
            raise UsageError("nothing to erase by: give --email, --phone, --id, "
                             "--customer-id or --case (a name alone, or a number that is "
                             "not a possible phone number, is never enough)")
        if not dry_run:
            erasure.check_reason(reason)
        p = erasure.plan(v, subject)
        _show_plan(p.as_dict(), as_json and dry_run)
        if dry_run:
            if p.held:
                erasure.refuse_if_held(v, p, reason or "dry run", None)
            return
        assert reason is not None
        # a hold refuses the whole erasure: nothing to confirm
        erasure.refuse_if_held(v, p, reason, None, case_id=case, listed=True)
        if not p.items:
            say("nothing held about this subject; tombstones are recorded all the same")
        if not yes and not _confirm(_question(p.linked)):
            # The operator chose not to: nothing failed, so exit 0.
            say("nothing erased: not confirmed")
            if as_json:
                emit_json({"status": "not confirmed", "erased": False})
            return
        eid = erasure.request(v, subject, reason, case)
        if erasure.four_eyes(v):
            out = {"erasure_id": eid, "status": "pending"}
            say(f"{eid} requested; a different operator must run 'chatvault erase approve "
                f"{eid}'")
        else:
            out = {"erasure_id": eid, "status": "done",
                   **erasure.execute(v, eid, subject, reason)}
            whole = out.get("removed_whole") or 0
            say(f"{eid} done: {out['conversations_removed']} removed, "
                f"{out['conversations_redacted']} redacted"
                + (f" ({whole} removed whole: the subject is written there in a form the "
                   "filter does not recognise)" if whole else "")
                + "; byte scan of the store found no trace")
        out["linked_not_given"] = p.as_dict()["linked_not_given"]
    if as_json:
        emit_json(out)


def _confirm(question: str) -> bool:
    """Ask on stderr, read stdin; stdout stays for data (click's prompt writes a space there)."""
    import sys

    from vault.errors import UsageError

    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        # end of input (no terminal, < /dev/null): nobody said yes or no
        sys.stderr.write("\n")
        raise UsageError(f"no answer to '{question}' (no terminal?): nothing was erased; "
                         "pass --yes to erase without a prompt")
    return line.strip().lower() in ("y", "yes")


def _question(linked: list[Any]) -> str:
    """The confirmation: it names what the erasure leaves when identifiers are linked."""
    if not linked:
        return "erase this?"
    return (f"erase this, leaving the {len(linked)} linked identifier(s) named above "
            "as they are?")


def _with_case(v: Any, case: str, email: Many, phone: Many, ids: Many,
               customer_id: Many) -> Any:
    """The case's identifiers and those given beside ``--case``.

    The plan's own advice ("add --phone to include it") is followed on the
    same command line; identifiers given with ``--case`` were ignored in silence.
    """
    from vault import dsar

    dsar.get(v.conn, case)
    subject = dsar.subject_of(v.conn, case)
    if not (email or phone or ids or customer_id):
        return subject
    for kind, value in subject_of(v, email, phone, None, ids, customer_id).pairs():
        if value not in subject.bucket(kind):
            subject.bucket(kind).append(value)
    return subject


def _show_plan(plan: dict[str, Any], as_json: bool) -> None:
    from vault.subjectlinks import link_lines

    if as_json:
        emit_json(plan)
        return
    say(f"would remove {len(plan['remove'])} conversation(s) where the subject is the "
        f"customer, redact the subject in {len(plan['redact'])} other(s)")
    for c in plan["remove"]:
        say(f"  remove  {c}")
    for c in plan["redact"]:
        say(f"  redact  {c}")
    for line in link_lines(plan["linked_not_given"], _ERASE_FOLLOW_UP):
        say(line)
    if plan["held_by"]:
        say(f"HELD by {', '.join(plan['held_by'])}: nothing will be erased")


#: what an erasure's plan says about an identifier linked to the subject but not given
_ERASE_FOLLOW_UP = ("not part of this erasure: kept where it appears without the identifiers "
                    "given; add {option} to include it")


@erase_app.command("approve")
def erase_approve(erasure_id: Annotated[str, typer.Argument()],
                  yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
                  home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Approve (and carry out) another operator's erasure request, after seeing its plan."""
    from vault import audit, erasure

    with vault_at(home) as v:
        # the second pair of eyes sees what the first one saw: whose data, and how much
        subject, info = erasure.pending_subject(v, erasure_id)
        erasure_id = info["id"]  # as written ('e-0002' is E-0002)
        say(f"{erasure_id}: asked by {info['requested_by']}, reason: {info['reason']}; "
            f"subject: {', '.join(f'{k} {val}' for k, val in subject.exact())}")
        _show_plan(erasure.plan(v, subject).as_dict(), False)
        asker = info["requested_by"] == audit.operator()  # refused below, without asking
        if not (yes or asker) and not _confirm(f"approve and carry out {erasure_id}?"):
            say(f"{erasure_id} not approved: it stays pending")
            if as_json:
                emit_json({"erasure_id": erasure_id, "status": "pending"})
            return
        out = {"erasure_id": erasure_id, "status": "done", **erasure.approve(v, erasure_id)}
    emit_json(out) if as_json else say(f"{erasure_id} approved and done")


@erase_app.command("list")
def erase_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Erasure requests: pending, scrubbing, done, incomplete, refused."""
    from vault import erasure

    with vault_at(home) as v:
        items = erasure.listing(v.conn)
    if as_json:
        emit_json({"erasures": items})
        return
    for e in items:
        print(f"{e['id']}  {e['status']:10} by {e['requested_by']} at {e['requested_at']}"
              + (f", approved by {e['approved_by']}" if e["approved_by"] else "")
              + (f"  {e['note']}" if e["note"] else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(erase_app, name="erase", help="Erasure (Art. 17) that stays erased.")
