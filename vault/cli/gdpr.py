"""Data-subject commands on the vault: subject find, search, dsar, erase.

Thin: each command parses options, calls :mod:`vault.subjects`,
:mod:`vault.dsar` or :mod:`vault.erasure`, and prints (restriction,
retention, legal holds and the audit log are in :mod:`vault.cli.governance`,
which shares the options defined here).
Everything heavy is imported inside the commands, so ``chatvault subject
find`` starts without loading rich, phonenumbers' metadata is only touched
when a phone number is given, and no command pays for another's imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, emit_json, resolve_home, say

Many = Optional[list[str]]
EmailOpt = Annotated[Many, typer.Option("--email", help="E-mail address (repeatable)")]
PhoneOpt = Annotated[Many, typer.Option("--phone", help="Phone number, any written form "
                                                        "(repeatable)")]
NameOpt = Annotated[Many, typer.Option("--name", help="Name (matches need review)")]
IdOpt = Annotated[Many, typer.Option("--id", help="Platform user id as PLATFORM:ID")]
CustOpt = Annotated[Many, typer.Option("--customer-id", help="The platform's customer id")]
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="YYYY-MM-DD or a time")]
UntilOpt = Annotated[Optional[str], typer.Option("--until", help="YYYY-MM-DD (inclusive)")]
SourceOpt = Annotated[Optional[str], typer.Option("--source", help="Source name, as the "
                                                                   "exporter names it")]
PurposeOpt = Annotated[Optional[str], typer.Option(
    "--purpose", help="Why you search (a case id...): goes into the audit log")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: goes into the audit log")]


def _case_id(value: str | None) -> str | None:
    """'dsar-2026-0001' is DSAR-2026-0001: ids are written in capitals, typed any way."""
    return value.strip().upper() if value else value


CaseArg = Annotated[str, typer.Argument(callback=_case_id, help="DSAR-YYYY-NNNN")]

subject_app = typer.Typer(no_args_is_help=True)
dsar_app = typer.Typer(no_args_is_help=True)
erase_app = typer.Typer(invoke_without_command=True)


def vault_at(home: Path | None) -> Any:
    from vault.subjects import open_vault

    return open_vault(resolve_home(home))


def subject_of(v: Any, email: Many, phone: Many, name: Many = None, ids: Many = None,
             customer: Many = None) -> Any:
    from vault.subjects import Subject

    subject = Subject.parse(emails=email or [], phones=phone or [], names=name or [],
                            ids=ids or [], customer_ids=customer or [], region=v.region)
    for note in subject.notes:
        say(f"note: {note}")
    return subject


# -- subject find, search --------------------------------------------------------------

@subject_app.command("find")
def subject_find(email: EmailOpt = None, phone: PhoneOpt = None, name: NameOpt = None,
                 ids: IdOpt = None, customer_id: CustOpt = None, since: SinceOpt = None,
                 until: UntilOpt = None, source: SourceOpt = None,
                 purpose: PurposeOpt = None, home: HomeOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Every conversation a person took part in or is mentioned in, and why."""
    # the same function the entry point runs without Typer (vault.quickcli)
    from vault import quickcli

    quickcli.subject_find(email=email, phone=phone, name=name, ids=ids,
                          customer_id=customer_id, since=since, until=until, source=source,
                          purpose=purpose, home=home, as_json=as_json)


def search_cmd(query: Annotated[str, typer.Argument(help="Words to find (any text)")],
               source: SourceOpt = None,
               limit: Annotated[int, typer.Option("--limit", min=1,
                                                  help="Conversations at most")] = 50,
               purpose: PurposeOpt = None, home: HomeOpt = None,
               as_json: JsonOpt = False) -> None:
    """Full-text search over message text, ranked, with snippets."""
    from vault.subjects import search_for

    with vault_at(home) as v:
        out = search_for(v, query, source=source, limit=limit, purpose=purpose)
    if as_json:
        emit_json(out)
        return
    for r in out["results"]:
        print(f"{r['source']}/{r['conversation_id']}")
        for m in r["messages"]:
            print(f"    {m['message_id']} {m['at']}: {m['snippet']}")
    say(f"{len(out['results'])} conversation(s)"
        + (f"; {out['restricted_hidden']} hidden by an Art. 18 restriction"
           if out["restricted_hidden"] else "")
        + (f"; more may match: only the best {limit} are listed (raise --limit)"
           if out["more"] else ""))


# -- dsar -----------------------------------------------------------------------------

@dsar_app.command("open")
def dsar_open(received: Annotated[str, typer.Option("--received", help="YYYY-MM-DD")],
              email: EmailOpt = None, phone: PhoneOpt = None, name: NameOpt = None,
              ids: IdOpt = None, customer_id: CustOpt = None,
              note: Annotated[Optional[str], typer.Option("--note")] = None,
              home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Open a case; due the same day one month after it was received."""
    from vault import dsar

    from vault.errors import UsageError

    with vault_at(home) as v:
        subject = subject_of(v, email, phone, name, ids, customer_id)
        if not subject.exact():  # dsar export would refuse it at the deadline
            raise UsageError("a case needs an identifier to search with: --email, --phone, "
                             "--id or --customer-id (a name alone only finds matches that "
                             "need review; add it beside one of those)")
        case = dsar.open_case(v, dsar.parse_date(received), subject, note)
    if as_json:
        emit_json({"case_id": case.id, "due": case.due, "received": case.received})
    else:
        print(f"{case.id} opened: received {case.received}, due {case.due}")


@dsar_app.command("extend")
def dsar_extend(case_id: CaseArg,
                months: Annotated[int, typer.Option("--months", help="1 or 2")] = 2,
                reason: ReasonOpt = "", home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Extend the deadline by up to two more months, with a reason (Art. 12(3))."""
    from vault import dsar

    with vault_at(home) as v:
        case = dsar.extend(v, case_id, months, reason)
    if as_json:
        emit_json(case.as_dict())
    else:
        print(f"{case.id}: now due {case.effective_due}")


@dsar_app.command("list")
def dsar_list(all_cases: Annotated[bool, typer.Option("--all", help="Closed ones too")] = False,
              home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Open cases, days left, overdue ones first."""
    from vault import dsar

    with vault_at(home) as v:
        items = [c.as_dict() for c in dsar.cases(v.conn, all_cases)]
    if as_json:
        emit_json({"cases": items})
        return
    for c in items:
        left = c.get("days_left")
        when = ("" if left is None else f"OVERDUE by {-left} days" if left < 0
                else f"{left} days left")
        print(f"{c['case_id']}  received {c['received']}  due {c['effective_due']}  "
              f"{c['status']}  {when}")


@dsar_app.command("export")
def dsar_export(case_id: CaseArg,
                out: Annotated[Path, typer.Option("--out", help="Folder for the package")],
                seal_to: Annotated[Optional[Path], typer.Option(
                    "--seal-to", help="Public key file: seal the package to it")] = None,
                home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Write the case's package: JSON, HTML transcripts, attachments, manifest."""
    from vault import dsar
    from vault.subjectlinks import link_lines

    # dsar.export checks the case (and the key to seal to) before it creates --out
    with vault_at(home) as v:
        result = dsar.export(v, case_id, out, seal_to=seal_to)
    if as_json:
        emit_json(result)
        return
    print(result.get("sealed") or result["path"])
    say(f"{result['conversations']} conversation(s), {result['attachments']} attachment(s), "
        f"{result['redactions']} redaction(s); {len(result['needs_review'])} name-only "
        "match(es) left out for review")
    for r in result["needs_review"]:
        say(f"  needs review: {r['source']}/{r['conversation_id']} ({'; '.join(r['reasons'])})")
    for line in link_lines(result["linked"], _DSAR_FOLLOW_UP):
        say(line)


#: what a DSAR export says about an identifier linked to the subject but not searched with
_DSAR_FOLLOW_UP = ("shown unredacted in the package, not searched with: open a case with "
                   "{option} too to include conversations found only by it")


@dsar_app.command("unseal")
def dsar_unseal(bundle_file: Annotated[Path, typer.Argument(
                    help="A package sealed by 'dsar export --seal-to'")],
                out: Annotated[Path, typer.Option("--out", help="Folder to open it into")],
                home: HomeOpt = None,
                passphrase_file: Annotated[Optional[Path], typer.Option(
                    "--passphrase-file")] = None,
                as_json: JsonOpt = False) -> None:
    """Online: check a sealed package against the trusted vault key, open it into OUT/CASE."""
    from vault import dsarpack
    from vault.home import Home

    h = Home(resolve_home(home))
    target = dsarpack.open_package(bundle_file, h.identity(passphrase_file), h.trust(), out)
    files = sum(1 for p in target.rglob("*") if p.is_file())
    if as_json:
        emit_json({"path": str(target), "case_id": target.name, "files": files})
        return
    print(target)
    say(f"{files} file(s), each checked against the package's signed manifest")


@dsar_app.command("close")
def dsar_close(case_id: CaseArg,
               note: Annotated[Optional[str], typer.Option("--note")] = None,
               home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Close a case (answered, withdrawn...)."""
    from vault import dsar

    with vault_at(home) as v:
        case = dsar.close(v, case_id, note)
    emit_json(case.as_dict()) if as_json else print(f"{case.id} closed")


# -- erase ----------------------------------------------------------------------------

@erase_app.callback()
def erase_cmd(ctx: typer.Context,
              case: Annotated[Optional[str], typer.Option(
                  "--case", callback=_case_id, help="A DSAR case")] = None,
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
    app.add_typer(subject_app, name="subject", help="Find everything about a person.")
    app.command("search")(search_cmd)
    app.add_typer(dsar_app, name="dsar", help="Access requests: cases and packages.")
    app.add_typer(erase_app, name="erase", help="Erasure (Art. 17) that stays erased.")
