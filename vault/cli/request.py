"""``chatvault request ...``: ask the vault across the air gap, and collect its answers.

Online commands: ``restore``, ``dsar`` and ``erase`` write one signed
request onto the stick (:mod:`vault.ask`); ``approve`` adds a second DPO's
signature to an erasure request; ``collect`` verifies and opens what the
vault answered, and ``status`` lists what still waits (:mod:`vault.answers`).
On the vault, the daemon and ``chatvault vault ingest`` answer them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, emit_json, resolve_home, say

app = typer.Typer(no_args_is_help=True)

MediaOpt = Annotated[Path, typer.Option("--media", help="The stick (its mount point)")]
Many = Optional[list[str]]
EmailOpt = Annotated[Many, typer.Option("--email", help="E-mail address (repeatable)")]
PhoneOpt = Annotated[Many, typer.Option(
    "--phone", help="Phone number, any written form (repeatable; the vault's region applies)")]
IdOpt = Annotated[Many, typer.Option(
    "--id", help="Platform user id as PLATFORM:ID, e.g. slack:U024BE7LH (repeatable)")]
AnswerToOpt = Annotated[Optional[Path], typer.Option(
    "--answer-to", help="Seal the answer to this public key file (default: this home's key)")]
DaysOpt = Annotated[int, typer.Option(
    "--expires-in", help="Days the vault may act on it (1-90)")]
PassOpt = Annotated[Optional[Path], typer.Option(
    "--passphrase-file", help="Passphrase of a wrapped secret key")]


def _submit(action: str, params: dict[str, Any], media_root: Path, home: Path | None,
            answer_to: Path | None, days: int, passphrase_file: Path | None,
            as_json: bool) -> None:
    from vault import ask, requestparams

    requestparams.check_online(action, params)
    info = ask.submit(resolve_home(home), media_root, action, params, answer_to=answer_to,
                      days=days, passphrase_file=passphrase_file)
    if as_json:
        emit_json(info)
        return
    print(info["path"])
    say(f"{action} request {info['request_id'][:16]} ({info['summary']}) written, valid "
        f"until {info['expires_at']}; carry the stick to the vault, then run 'chatvault "
        "request collect' when it comes back")


@app.command("restore")
def restore_cmd(
    media_root: MediaOpt,
    source: Annotated[Optional[str], typer.Option("--source", help="Restore this source")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Conversations active on or after this date (YYYY-MM-DD)")] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", help="... and started on or before this date")] = None,
    conversation: Annotated[Many, typer.Option(
        "--conversation", help="A conversation id (repeatable)")] = None,
    answer_to: AnswerToOpt = None, expires_in: DaysOpt = 14, home: HomeOpt = None,
    passphrase_file: PassOpt = None, as_json: JsonOpt = False,
) -> None:
    """Ask for a restore set: a source (and time window) or conversations."""
    params: dict[str, Any] = {k: v for k, v in (("source", source), ("since", since),
                                                ("until", until)) if v is not None}
    if conversation:
        params["conversations"] = list(conversation)
    _submit("restore", params, media_root, home, answer_to, expires_in, passphrase_file,
            as_json)


@app.command("dsar")
def dsar_cmd(
    media_root: MediaOpt,
    received: Annotated[str, typer.Option("--received", help="When the request came in "
                                                             "(YYYY-MM-DD)")],
    email: EmailOpt = None, phone: PhoneOpt = None, ids: IdOpt = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Kept with the case")] = None,
    answer_to: AnswerToOpt = None, expires_in: DaysOpt = 14, home: HomeOpt = None,
    passphrase_file: PassOpt = None, as_json: JsonOpt = False,
) -> None:
    """Ask for a data subject access package (Art. 15), sealed to you."""
    params: dict[str, Any] = {"emails": _emails(email), "phones": list(phone or []),
                              "received": received}
    if ids:  # only when given: a request without ids reads as before
        params["ids"] = list(ids)
    if note is not None:
        params["note"] = note
    _submit("dsar", params, media_root, home, answer_to, expires_in, passphrase_file, as_json)


@app.command("erase")
def erase_cmd(
    media_root: MediaOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why: goes into the audit log")],
    email: EmailOpt = None, phone: PhoneOpt = None, ids: IdOpt = None,
    expires_in: DaysOpt = 14, home: HomeOpt = None,
    passphrase_file: PassOpt = None, as_json: JsonOpt = False,
) -> None:
    """Ask for an erasure (Art. 17); with four eyes, a second DPO approves it."""
    params: dict[str, Any] = {"emails": _emails(email), "phones": list(phone or []),
                              "reason": reason}
    if ids:
        params["ids"] = list(ids)
    _submit("erase", params, media_root, home, None, expires_in, passphrase_file, as_json)


def _emails(given: Many) -> list[str]:
    """Normalised as the vault will look them up; a bad one is named by its position."""
    from vault import identifiers
    from vault.errors import UsageError

    out = []
    for n, text in enumerate(given or [], 1):
        email = identifiers.normalise_email(text)
        if email is None:
            raise UsageError(f"--email number {n} is not an e-mail address")
        out.append(email)
    return out


@app.command("approve")
def approve_cmd(
    request_file: Annotated[Path, typer.Argument(help="The erasure request on the stick")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    home: HomeOpt = None, passphrase_file: PassOpt = None, as_json: JsonOpt = False,
) -> None:
    """Add your signature to another DPO's erasure request (four eyes)."""
    from vault import ask
    from vault.errors import UsageError

    def confirm(params: dict[str, Any]) -> bool:
        if as_json and yes:
            return True
        say("erasure requested for:")
        for kind in ("emails", "phones", "ids"):
            for value in params.get(kind, []):
                say(f"  {kind[:-1]:6} {value}")
        say(f"  reason {params['reason']}")
        if yes:
            return True
        try:
            return typer.confirm("approve this erasure?", err=True)
        except typer.Abort:
            # no terminal (or end of input): nobody said yes or no
            typer.echo("", err=True)
            raise UsageError(f"{request_file}: no answer to 'approve this erasure?' "
                             "(no terminal?): pass --yes to approve without a prompt") from None

    done = ask.approve(resolve_home(home), request_file, confirm,
                       passphrase_file=passphrase_file)
    if done is None:
        say("not approved; the request is unchanged")
        raise typer.Exit(1)
    if as_json:
        emit_json(done)
        return
    print(done["file"])
    say(f"approved: request {done['request_id'][:16]} now carries {len(done['signers'])} "
        "signatures")


@app.command("collect")
def collect_cmd(
    media_root: MediaOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder to open the answers into")],
    fmt: Annotated[str, typer.Option(
        "--format", help="Restore sets as jsonl, or native (also the platform's format)")
    ] = "jsonl",
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave collected answers and answered requests on the stick")] = False,
    home: HomeOpt = None, passphrase_file: PassOpt = None, as_json: JsonOpt = False,
) -> None:
    """Verify the vault's answers, open restore sets and DSAR packages, report each request."""
    from vault import answers
    from vault.errors import UsageError

    if fmt not in ("jsonl", "native"):
        raise UsageError(f"--format must be jsonl or native, not {fmt!r}")
    rep = answers.collect(resolve_home(home), media_root, out, keep=keep,
                          native=fmt == "native", passphrase_file=passphrase_file)
    if as_json:
        emit_json(rep.as_dict())
        raise typer.Exit(rep.exit_code)
    for c in rep.items:
        what = f"{c.action or '-'} {(c.request_id or '-')[:16]}"
        why = f" ({c.reason})" if c.reason else ""
        where = f"  -> {c.out}" if c.out else ""
        print(f"{c.result:9} {what:24} {c.status or '-'}{why}{where}")
        if c.error:
            say(f"  {c.file}: {c.error['message']}")
        if c.message and c.result != "not_ours":
            say(f"  {c.message}")
    for line in rep.ignored:
        print(f"{'ignored':9} {line}")
    odd = f"; {len(rep.ignored)} odd entries ignored, never read" if rep.ignored else ""
    say(f"{len(rep.items)} answer file(s); {len(rep.removed)} file(s) removed from the stick"
        f"{odd}")
    raise typer.Exit(rep.exit_code)


@app.command("resolve")
def resolve_cmd(
    request_id: Annotated[str, typer.Argument(help="The request's id (16 characters do)")],
    note: Annotated[str, typer.Option("--note", help="Why no answer is awaited any more")],
    home: HomeOpt = None, as_json: JsonOpt = False,
) -> None:
    """Stop waiting for a request no answer will settle (stick lost, expired on the way)."""
    from vault import ask

    out = ask.resolve(resolve_home(home), request_id, note)
    if as_json:
        emit_json(out)
        return
    say(f"request {out['request_id'][:16]} resolved: no longer listed by 'request status' "
        "(--all lists it)")


@app.command("status")
def status_cmd(
    every: Annotated[bool, typer.Option("--all", help="Answered requests too")] = False,
    home: HomeOpt = None, as_json: JsonOpt = False,
) -> None:
    """Requests still waiting for an answer. Exits 0 / 1 for OK / WARNING (one expired)."""
    from vault import requestregister

    rep = requestregister.status(resolve_home(home), every=every)
    if as_json:
        emit_json(rep)
        raise typer.Exit(rep["exit_code"])
    print(f"requests: {rep['status']}")
    for r in rep["requests"]:
        late = "  EXPIRED" if r["expired"] else ""
        late += f"  ({r['resolved']['note']})" if r.get("resolved") else ""
        print(f"{r['request_id'][:16]}  {r['action']:7} {r['state']:16} since "
              f"{r['created_at']}  until {r['expires_at']}{late}  {r['summary']}")
        for fp, a in sorted(r["answers"].items()):
            print(f"    {fp}: {a['status']}" + (f" ({a['reason']})" if a.get("reason") else ""))
    if not rep["requests"]:
        say("nothing waiting")
    raise typer.Exit(rep["exit_code"])
