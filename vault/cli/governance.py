"""Governance commands on the vault: restrict, retention, hold, audit.

Thin: each command parses options, calls :mod:`vault.restriction`,
:mod:`vault.retention`, :mod:`vault.holds` or :mod:`vault.audit`, and
prints. The options naming a person are shared with :mod:`vault.cli.gdpr`.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, emit_json, say
from vault.cli.gdpr import (CustOpt, EmailOpt, IdOpt, Many, PhoneOpt, ReasonOpt, SinceOpt,
                            SourceOpt, UntilOpt, subject_of, vault_at)

retention_app = typer.Typer(no_args_is_help=True)
hold_app = typer.Typer(no_args_is_help=True)
audit_app = typer.Typer(no_args_is_help=True)


# -- restrict -------------------------------------------------------------------------

def restrict_cmd(email: EmailOpt = None, phone: PhoneOpt = None, ids: IdOpt = None,
                 customer_id: CustOpt = None,
                 lift: Annotated[bool, typer.Option("--lift", help="End it")] = False,
                 list_all: Annotated[bool, typer.Option("--list")] = False,
                 reason: Annotated[str, typer.Option("--reason")] = "",
                 home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Restrict processing (Art. 18): hide a subject from search and exports."""
    from vault import restriction

    with vault_at(home) as v:
        if list_all:
            items = [r.as_dict() for r in restriction.listing(v.conn)]
            emit_json({"restrictions": items}) if as_json else [
                print(f"{r['ref']}  since {r['created_at']} by {r['created_by']}: "
                      f"{r['reason']}") for r in items]
            return
        subject = subject_of(v, email, phone, None, ids, customer_id)
        if lift:
            refs = restriction.lift(v, subject, reason)
            emit_json({"lifted": refs}) if as_json else say(f"lifted {', '.join(refs)}")
        else:
            r = restriction.add(v, subject, reason)
            emit_json(r.as_dict()) if as_json else say(f"{r.ref}: processing restricted")


# -- retention, holds -----------------------------------------------------------------

@retention_app.command("apply")
def retention_apply(dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
                    home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Purge conversations past their source's retention period (held ones stay)."""
    from vault import retention

    with vault_at(home) as v:
        rep = retention.apply(v, dry_run=dry_run)
    if as_json:
        emit_json(rep)
        return
    verb = "would purge" if dry_run else "purged"
    for src, c in sorted(rep["sources"].items()):
        print(f"{src}: {verb} {c['purged']} conversation(s), {c['messages']} message(s)"
              + (f"; {c['held']} held ({', '.join(c['holds'])})" if c["held"] else ""))
    t = rep["totals"]
    say(f"{verb} {t['purged']} conversation(s); {t['held']} kept by legal holds")


@hold_app.command("add")
def hold_add(name: Annotated[str, typer.Argument()], reason: ReasonOpt,
             subject: Annotated[Many, typer.Option(
                 "--subject", help="A subject's e-mail or phone (repeatable)")] = None,
             email: EmailOpt = None, phone: PhoneOpt = None, ids: IdOpt = None,
             customer_id: CustOpt = None, source: SourceOpt = None,
             conversation: Annotated[Optional[str], typer.Option(
                 "--conversation", help="A conversation id (or SOURCE/ID)")] = None,
             since: SinceOpt = None, until: UntilOpt = None, home: HomeOpt = None,
             as_json: JsonOpt = False) -> None:
    """Place a legal hold: erasure refuses and retention skips what it covers."""
    from vault import holds
    from vault.subjects import day_bound

    email = [*(email or []), *[s for s in subject or [] if "@" in s]]
    phone = [*(phone or []), *[s for s in subject or [] if "@" not in s]]
    with vault_at(home) as v:
        _check_subjects(v, subject or [])
        who = (subject_of(v, email, phone, None, ids, customer_id)
               if email or phone or ids or customer_id else None)
        h = holds.add(v, name, reason, subject=who, source=source,
                      conversation=conversation, since=day_bound(since),
                      until=day_bound(until, True))
    emit_json(h.as_dict()) if as_json else say(f"hold {h.name} placed: {h.describe()}")


def _check_subjects(v: Any, given: list[str]) -> None:
    """A --subject value that is no e-mail address or phone number is named as --subject
    (it is parsed as an --email or a --phone, whose names the message would give)."""
    from vault.errors import UsageError
    from vault.subjects import Subject

    for n, text in enumerate(given, 1):
        mail = "@" in text
        try:
            Subject.parse(emails=[text] if mail else [], phones=[] if mail else [text],
                          region=v.region)
        except UsageError as exc:
            which = "the --subject value" if len(given) == 1 else (
                f"--subject value {n} of {len(given)}")
            raise UsageError(f"{which} {exc.detail.split(' value ', 1)[-1]}") from None


@hold_app.command("list")
def hold_list(all_holds: Annotated[bool, typer.Option("--all", help="Released too")] = False,
              home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Active legal holds."""
    from vault import holds

    with vault_at(home) as v:
        items = [h.as_dict() for h in holds.listing(v.conn, all_holds)]
    if as_json:
        emit_json({"holds": items})
        return
    for h in items:
        print(f"{h['name']}  {h['describe']}  since {h['created_at']} by {h['created_by']}: "
              f"{h['reason']}" + (f"  (released {h['released_at']})" if h["released_at"]
                                  else ""))


@hold_app.command("release")
def hold_release(name: Annotated[str, typer.Argument()],
                 reason: Annotated[Optional[str], typer.Option("--reason")] = None,
                 home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """End a legal hold (kept on record)."""
    from vault import holds

    with vault_at(home) as v:
        h = holds.release(v, name, reason)
    emit_json(h.as_dict()) if as_json else say(f"hold {h.name} released")


# -- audit ----------------------------------------------------------------------------

@audit_app.command("show")
def audit_show(limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
               action: Annotated[Optional[str], typer.Option(
                   "--action", help="One action (erase) or a family (erase*)")] = None,
               since: SinceOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The newest audit-log entries (identifiers appear only as keyed hashes)."""
    from vault import audit
    from vault.subjects import day_bound

    with vault_at(home) as v:
        items = audit.entries(v.conn, limit, action=action, since=day_bound(since))
        head = audit.head(v.conn)
    if not items and action:  # 'eras' finds nothing: say why it may be so
        say(f"no entry with action {action!r} (actions read like 'erase.request'; "
            "'erase*' takes a family)")
    if as_json:
        emit_json({"entries": items, "head": head})
        return
    for e in items:
        print(f"{e['seq']:6} {e['at']} {e['operator']:12} {e['action']:20} "
              f"{e['target'] or '-'}" + (f"  purpose: {e['purpose']}" if e["purpose"] else ""))


@audit_app.command("verify")
def audit_verify(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain and the head the state file recorded; exit 3 if broken."""
    from vault import audit

    with vault_at(home) as v:
        n = audit.check(v.conn)
        head = audit.head(v.conn)
    if audit.witness_note:
        say(f"not compared with the state file: {audit.witness_note}")
    if as_json:
        emit_json({"ok": True, "entries": n, "head": head,
                   "state_file_compared": audit.witness_note is None})
    else:
        print(f"audit log intact: {n} entries, head {head}")


def register(app: typer.Typer) -> None:
    app.command("restrict")(restrict_cmd)
    app.add_typer(retention_app, name="retention", help="Retention periods and purges.")
    app.add_typer(hold_app, name="hold", help="Legal holds.")
    app.add_typer(audit_app, name="audit", help="The hash-chained audit log.")
