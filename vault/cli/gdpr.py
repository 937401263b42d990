"""Data-subject commands on the vault: subject find, search, dsar.

Thin: each command parses options, calls :mod:`vault.subjects` or
:mod:`vault.dsar`, and prints (erasure is in :mod:`vault.cli.erase`;
restriction, retention, legal holds and the audit log in
:mod:`vault.cli.governance`; both share the options defined here).
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


def normal_case_id(value: str | None) -> str | None:
    """'dsar-2026-0001' is DSAR-2026-0001: ids are written in capitals, typed any way."""
    return value.strip().upper() if value else value


CaseArg = Annotated[str, typer.Argument(callback=normal_case_id,
                                        help="DSAR-YYYY-NNNN")]

subject_app = typer.Typer(no_args_is_help=True)
dsar_app = typer.Typer(no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    app.add_typer(subject_app, name="subject", help="Find everything about a person.")
    app.command("search")(search_cmd)
    app.add_typer(dsar_app, name="dsar", help="Access requests: cases and packages.")
