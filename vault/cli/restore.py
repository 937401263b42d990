"""``chatvault restore ...``, ``chatvault drill``, ``chatvault vault rebuild|digest|state-save``.

The three vault commands belong to the ``vault`` group but live with the
restore family: they are added to :data:`vault.cli.vaultcmd.app` when this
module registers (Typer builds the command tree only when it runs, so the
order of registration does not matter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault.cli.common import HomeOpt, JsonOpt, QuietOpt, emit_json, resolve_home, say
from vault.errors import EXIT_OK, EXIT_REJECTED

restore_app = typer.Typer(no_args_is_help=True)
drill_app = typer.Typer()

PassOpt = Annotated[Optional[Path], typer.Option(
    "--passphrase-file", help="Passphrase of a wrapped secret key")]


def register(app: typer.Typer) -> None:
    app.add_typer(restore_app, name="restore",
                  help="Restore bundles: sealed on the vault, opened online.")
    app.add_typer(drill_app, name="drill", help="Restore drills: the whole loop, measured.")
    from vault.cli import vaultcmd

    vaultcmd.app.command("rebuild")(rebuild_cmd)
    vaultcmd.app.command("digest")(digest_cmd)
    vaultcmd.app.command("state-save")(state_save_cmd)


# -- restore create / open ----------------------------------------------------------------------

@restore_app.command("create")
def create_cmd(
    to: Annotated[list[Path], typer.Option("--to", help="Recipient public key file (repeat)")],
    source: Annotated[Optional[str], typer.Option("--source", help="Restore this source")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Conversations active on or after this date (YYYY-MM-DD)")] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", help="... and started on or before this date")] = None,
    conversation: Annotated[Optional[list[str]], typer.Option(
        "--conversation", help="ID or SOURCE/ID, as subject find lists it (repeat)")] = None,
    subject_email: Annotated[Optional[list[str]], typer.Option(
        "--subject-email", help="Every conversation of this e-mail address (repeat)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write into this folder")] = None,
    media_root: Annotated[Optional[Path], typer.Option(
        "--media", help="Write into <media>/chatvault/answers/")] = None,
    max_bytes: Annotated[int, typer.Option(
        "--max-bytes", help="Largest part file (at most 4 GiB - 1, for FAT32)")] = 1024**3,
    purpose: Annotated[Optional[str], typer.Option(
        "--purpose", help="Why (recorded in the audit log)")] = None,
    home: HomeOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Seal conversations into a restore set for the online side (left out: erased, restricted)."""
    from vault import atomic, keys, media, restore
    from vault.errors import UsageError
    from vault.home import Home

    if (out is None) == (media_root is None):
        raise UsageError("give exactly one of --out DIR or --media MEDIA")
    h = Home(resolve_home(home))
    sel = restore.Selection(source=source, since=since, until=until,
                            conversations=tuple(conversation or ()),
                            subject_emails=tuple(subject_email or ()))
    recipients = [keys.load_public(p) for p in to]
    if out is not None:
        with atomic.output_dir(out):
            made = restore.create(h.path, h.identity(passphrase_file), recipients, sel, out,
                                  max_bytes=max_bytes, purpose=purpose, on_media=False)
    else:
        assert media_root is not None
        target = media.folder(media_root, media.ANSWERS, create=True)
        made = restore.create(h.path, h.identity(passphrase_file), recipients, sel, target,
                              max_bytes=max_bytes, purpose=purpose, on_media=True)
    if as_json:
        emit_json(made.as_dict())
        return
    for part in made.parts:
        print(f"{part['path']}  {part['size']} bytes  {part['source']}  "
              f"{part['conversations']} conversations  sha256 {part['sha256']}")
    left = ", ".join(f"{n} {why}" for why, n in made.excluded.items() if n) or "none"
    say(f"restore {made.restore_id[:16]}: {made.conversations} conversations, {made.blobs} "
        f"attachments in {len(made.parts)} part(s); left out: {left}; redacted: "
        f"{made.redacted}")
    if subject_email and not made.conversations and not any(made.excluded.values()):
        say("note: no conversation of the --subject-email given is held (a typo? "
            "'chatvault subject find --email ...' lists what is)")


@restore_app.command("open")
def open_cmd(
    bundles: Annotated[list[Path], typer.Argument(help="Every part of the restore set")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the conversations into")],
    fmt: Annotated[str, typer.Option(
        "--format", help="jsonl, or native (also the platform's own format)")] = "jsonl",
    partial: Annotated[bool, typer.Option(
        "--partial", help="Open the parts given even if the set is incomplete")] = False,
    home: HomeOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """On the online side: verify the vault's signature, decrypt, write the conversations."""
    from vault import restoreopen
    from vault.errors import MediaMissing, UsageError
    from vault.home import Home

    if fmt not in ("jsonl", "native"):
        raise UsageError(f"--format must be jsonl or native, not {fmt!r}")
    h = Home(resolve_home(home))
    for path in bundles:
        if not path.exists():
            raise MediaMissing("no such file (is the stick mounted?)", path=path)
        if not path.is_file():
            raise UsageError(f"{path}: not a file; name each part of the restore set")
    opened = restoreopen.open_bundles(bundles, h.identity(passphrase_file), h.trust(), out,
                                      native=fmt == "native", partial=partial)
    if as_json:
        emit_json(opened.as_dict())
        return
    for name, info in sorted(opened.sources.items()):
        native = f", native: {info['native']}/" if info["native"] else ""
        print(f"{out / info['jsonl']}  {info['conversations']} conversations{native}")
        if fmt == "native" and not info["native"]:
            say(f"note: {name}: chatvault cannot write {info['format']} exports back "
                "(see 'chatvault sources formats'); only the canonical JSONL was written")
    if opened.missing:
        say(f"PARTIAL: missing {', '.join(opened.missing)}")
    say(f"opened {opened.parts} part(s): {opened.conversations} conversations, "
        f"{opened.blobs} attachments")


# -- drill ----------------------------------------------------------------------------------------

@drill_app.callback(invoke_without_command=True)
def drill_cmd(
    ctx: typer.Context,
    sample: Annotated[int, typer.Option(
        "--sample", min=1, help="Drill this many archived bundles, picked at random")] = 3,
    every: Annotated[bool, typer.Option("--all", help="Drill every archived bundle")] = False,
    home: HomeOpt = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a restore drill; exits 3 when anything mismatched. 'drill list' shows past ones."""
    if ctx.invoked_subcommand is not None:
        return
    from vault import drill

    report = drill.run(resolve_home(home), sample=sample, every=every,
                       passphrase_file=passphrase_file)
    body = report["body"]
    if as_json:
        emit_json(report)
    else:
        _print_drill(body)
    if not quiet and not as_json:
        say("drill PASSED" if body["passed"] else "drill FAILED: see the mismatches above")
    raise typer.Exit(EXIT_OK if body["passed"] else EXIT_REJECTED)


def _print_drill(body: dict[str, Any]) -> None:
    c = body["counts"]
    print(f"drill {body['drill_id'][:16]} at {body['at']}: "
          f"{'PASSED' if body['passed'] else 'FAILED'} ({body['mode']})")
    print(f"bundles {len(body['bundles'])}, records {c['records']}, comparisons "
          f"{c['compared']}, matched {c['matched']}, mismatches {body['mismatch_count']}")
    print(f"expected absent: erased {c['erased']}, purged {c['purged']}, restricted "
          f"{c['restricted']}; superseded {c['superseded']}, redacted {c['redacted']}")
    print(f"restored {c['restored']} conversations, {c['attachments']} attachments")
    for step, secs in body["steps"].items():
        print(f"  {step:16} {secs:10.3f} s")
    print(f"  {'total':16} {body['total_seconds']:10.3f} s   (recovery "
          f"{body['recovery_seconds']:.3f} s)")
    for m in body["mismatches"]:
        where = ", ".join(f"{k} {v}" for k, v in m.items() if k != "check")
        print(f"MISMATCH {m['check']}: {where}")


@drill_app.command("list")
def drill_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Past drills, newest first, each report's signature checked."""
    from vault import drillreports

    rows = drillreports.reports(resolve_home(home))
    if as_json:
        emit_json({"drills": rows})
        return
    if not rows:
        say("no drill has been run yet: run 'chatvault drill'")
        return
    for r in rows:
        if not r["valid"]:
            print(f"{r['file']}  INVALID REPORT ({r['error']})")
            continue
        print(f"{r['at']}  {'passed' if r['passed'] else 'FAILED':6}  {r['mode']:10} "
              f"bundles {r['bundles']:4}  records {r['records']:6}  mismatches "
              f"{r['mismatches']:4}  recovery {r['recovery_seconds']:.2f} s")


# -- vault rebuild / digest / state-save ---------------------------------------------------------

def rebuild_cmd(
    into: Annotated[Path, typer.Option("--into", help="The new home to rebuild into")],
    home: HomeOpt = None,
    archive: Annotated[Optional[Path], typer.Option(
        "--archive", help="Archive folder (default: <home>/archive, or <into>/archive)")] = None,
    state: Annotated[Optional[Path], typer.Option(
        "--state", help="State file (default: <archive>/vault-state.cvs)")] = None,
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a store from the archive and the state file; exits 3 if bundles are missing."""
    from vault import rebuild

    live = resolve_home(home)
    source_home = live if (live / "keys" / "public.key").is_file() else None
    report = rebuild.rebuild(into, home=source_home, archive=archive, state_path=state,
                             passphrase_file=passphrase_file)
    if as_json:
        emit_json(report.as_dict())
    else:
        print(report.digest["digest"])
        say(f"rebuilt {into}: {report.ingested} bundles ingested; archived copies left "
            f"out: {report.tombstoned} erased (tombstones), {report.purged_left_out} purged "
            f"(retention); {report.purged} purged by the retention run that ends the "
            f"rebuild; the store holds {report.digest['conversations']} conversations "
            "(compare the digest above with 'chatvault vault digest' on the live vault, "
            "after 'chatvault retention apply' there if that run purged any)")
        for item in report.missing:
            say(f"MISSING from the archive: {item}")
        for item in report.quarantined:
            say(f"QUARANTINED: {item}")
    raise typer.Exit(EXIT_OK if report.complete else EXIT_REJECTED)


def digest_cmd(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A canonical digest of the conversations held: equal for a store and its rebuild."""
    from vault import rebuild

    info = rebuild.digest_of(resolve_home(home))
    if as_json:
        emit_json(info)
        return
    print(info["digest"])
    say(f"{info['conversations']} conversations, {info['attachments']} attachments")


def state_save_cmd(home: HomeOpt = None, passphrase_file: PassOpt = None,
                   as_json: JsonOpt = False) -> None:
    """Write the state file beside the archive now (it is also written after every change)."""
    from vault import statefile
    from vault.home import Home

    h = resolve_home(home)
    statefile.write(h, "by hand", Home(h).identity(passphrase_file))
    info = statefile.describe(h)
    if as_json:
        emit_json(info)
        return
    say(f"state file {info['path']} (#{info['sequence']}, current: {info['current']})")
