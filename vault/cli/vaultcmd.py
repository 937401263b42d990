"""``chatvault vault ...``: ingest, status, daemon on the offline vault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault.cli.common import (HomeOpt, JsonOpt, QuietOpt, emit_json, resolve_home, say,
                              show_progress, status_output)

app = typer.Typer(no_args_is_help=True)


def _print_outcomes(outcomes: list[Any], given: set[str]) -> None:
    """One line per bundle, named as the operator knows it (the path given, or its name)."""
    for o in outcomes:
        d = o.as_dict()
        name = o.origin if o.origin in given else o.bundle_file
        where = f"{d['source']} #{d['sequence']}" if d["source"] else "-"
        c = d["counts"]
        erased, purged, merged = c.get("tombstoned", 0), c.get("purged", 0), c.get("merged", 0)
        taken = (f"{c.get('conversations', 0)} conv, {c.get('messages', 0)} msg"
                 + (f", {merged} merged (earlier messages kept)" if merged else "")
                 + (f", {erased} left out (erased)" if erased else "")
                 + (f", {purged} left out (purged)" if purged else "")
                 if o.status == "ingested" else "")
        note = f"  {o.reason}" if o.reason else ""
        print(f"{o.status:11} {name:32} {where:20} {taken}{note}")


def _summary(outcomes: list[Any]) -> dict[str, int]:
    out = {"ingested": 0, "duplicate": 0, "quarantined": 0, "conversations": 0, "messages": 0,
           "left_out_erased": 0, "left_out_purged": 0, "merged": 0}
    for o in outcomes:
        out[o.status] += 1
        if o.status == "ingested":
            out["conversations"] += o.counts.get("conversations", 0)
            out["messages"] += o.counts.get("messages", 0)
            out["left_out_erased"] += o.counts.get("tombstoned", 0)
            out["left_out_purged"] += o.counts.get("purged", 0)
            out["merged"] += o.counts.get("merged", 0)
    return out


def _require_media_folder(folder: Path) -> None:
    """A folder given to ``vault ingest`` must be a stick's top: it holds ``chatvault/``.

    Anything else would be read as a stick with nothing on it ("0 ingested").
    """
    from vault import errors, media

    if (folder / media.ROOT).is_dir() and not (folder / media.ROOT).is_symlink():
        return
    top = next((p for p in [folder, *folder.parents] if p.name == media.ROOT), None)
    hint = (f"give the stick's top folder instead: {top.parent}" if top is not None else
            "give the stick's top folder (the one holding chatvault/)")
    loose = sorted(folder.glob("*.cvb"))[:1]
    if loose and top is None:
        hint += f"; bundle files can be given one by one ({folder}/*.cvb)"
    raise errors.UsageError(f"is not a media folder: it holds no {media.ROOT}/ folder, so "
                            f"nothing would be read from it; {hint}", path=folder)


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(
        help="Media folders (holding chatvault/outbox/) and/or bundle files")],
    home: HomeOpt = None,
    media_label: Annotated[Optional[str], typer.Option(
        "--media-label", help="Label recorded with the bundles (e.g. the stick's name)")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Verify and ingest bundles; write a signed receipt for each.

    For a media folder, receipts go onto the media (chatvault/receipts/);
    for bundle files given directly, they are kept in H/receipts/ only
    (a copy of every receipt is always kept there). Signed requests on a
    media folder (chatvault/requests/) are then answered, as the daemon does.
    """
    from vault import errors, ingest, staging, vaultconfig

    h = resolve_home(home)
    cfg = vaultconfig.load(h)
    progress = show_progress(quiet or as_json)
    outcomes: list[Any] = []
    answered: list[Any] = []
    ignored: list[str] = []
    failure: errors.ChatvaultError | None = None
    files = [p for p in paths if not p.is_dir()]
    for p in paths:
        if not p.exists():
            raise errors.MediaMissing("no such file or folder (is the stick mounted?)",
                                      path=p)
        if p.is_dir():
            _require_media_folder(p)
    try:
        for folder in [p for p in paths if p.is_dir()]:
            outcomes += ingest.ingest_media(h, folder, media_label=media_label,
                                            progress=progress,
                                            delete_ingested=False)
            answered += _answer_requests(h, folder)
            ignored += _odd_on_media(folder)
        if files:
            staged = staging.stage_files(h, files, max_plaintext=cfg.max_plaintext_bytes)
            outcomes += ingest.ingest_staged(h, staged, media_label=media_label,
                                             progress=progress)
    except errors.MediaError as exc:
        outcomes += getattr(exc, "outcomes", [])
        failure = exc

    code = errors.most_severe([o.exit_code for o in outcomes + answered]
                              + ([failure.exit_code] if failure else [])
                              + ([errors.EXIT_REJECTED] if ignored else []))
    summary = _summary(outcomes)
    if as_json:
        emit_json({"outcomes": [o.as_dict() for o in outcomes], "summary": summary,
                   "answers": [a.as_dict() for a in answered], "ignored": ignored,
                   "error": failure.as_dict() if failure else None, "exit_code": code})
    else:
        _print_outcomes(outcomes, {str(p) for p in files})
        for a in answered:
            why = f" ({a.reason})" if a.reason else ""
            print(f"{a.status:11} {a.file:32} request {a.action or '-'}{why}")
        if not quiet:
            erased, purged = summary["left_out_erased"], summary["left_out_purged"]
            merged = summary["merged"]
            say(f"{summary['ingested']} ingested ({summary['conversations']} conversations "
                f"read, {summary['messages']} messages stored"
                f"{f', {merged} merged with earlier messages kept' if merged else ''}"
                f"{f', {erased} left out (erased)' if erased else ''}"
                f"{f', {purged} left out (purged)' if purged else ''}), "
                f"{summary['duplicate']} duplicate, "
                f"{summary['quarantined']} quarantined"
                + (f", {len(ignored)} odd entries ignored (named above)" if ignored else ""))
    if failure is not None:
        say(f"chatvault: {failure}")
    raise typer.Exit(code)


def _odd_on_media(folder: Path) -> list[str]:
    """Links, FIFOs, folders or strange names where bundles and requests go, in words.

    Ingest passes over them (they are never followed or read) and logs them;
    they are reported here too, and make the command exit 3, because nothing
    chatvault writes looks like that: someone else put them there.
    """
    from vault import media, staging

    root = folder / media.ROOT
    odd = media.odd_entries(root / media.OUTBOX, staging.SUFFIX)
    if (root / media.REQUESTS).is_dir():
        from vault import requests

        odd += media.odd_entries(root / media.REQUESTS, requests.SUFFIX)
    return [media.describe_odd(path, why) for path, why in odd]


def _answer_requests(home: Path, folder: Path) -> list[Any]:
    """Answer the requests on a media folder (vault.requests), as the daemon does."""
    from vault import media

    if not (folder / media.ROOT / media.REQUESTS).is_dir():
        return []
    from vault import requests

    return list(requests.answer_media(home, folder))


def _table(rep: dict[str, Any]) -> list[str]:
    """The per-source table for people, each column as wide as its widest cell."""
    from vault import vaultstatus

    head = ("source", "last seq", "last ingest", "gaps", "forks", "quarantined", "")
    rows = [head]
    for item in rep["sources"]:
        gaps = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in item["gaps"]) or "-"
        seq, when = item["last_sequence"], item["last_ingest_at"]
        rows.append((item["source"], "-" if seq is None else str(seq),
                     vaultstatus.short_time(when) if when else "never", gaps,
                     str(item["forks"]), str(item["quarantined"]),
                     "OVERDUE" if item["overdue"] else ""))
    if rep.get("quarantined_unknown_source"):
        rows.append(("(unknown source)", "-", "-", "-", "0",
                     str(rep["quarantined_unknown_source"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    numeric = {1, 4, 5}
    return ["  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


@app.command("status")
def status_cmd(
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    prometheus: Annotated[Optional[Path], typer.Option(
        "--prometheus", help="Also write Prometheus textfile metrics to this file")] = None,
) -> None:
    """Sources, chain gaps, forks, quarantine, overdue sources, clock, disk.

    Exits 0 / 1 / 2 for OK / WARNING / CRITICAL.
    """
    from vault import vaultstatus

    from vault.quickcli import verdict

    rep = vaultstatus.report(resolve_home(home))
    verdict(rep["exit_code"])
    if prometheus is not None:
        vaultstatus.write_prometheus(prometheus, rep)
    with status_output(rep["exit_code"]):
        if as_json:
            emit_json(rep)
        else:
            _print_status(rep)


def _print_status(rep: dict[str, Any]) -> None:
    s = rep["store"]
    print(f"vault status: {rep['status']} (at {rep['at']})"
          + ("; an ingest is running" if rep.get("ingest_running") else ""))
    for line in _table(rep):
        print(line)
    print(f"store {s['store_bytes'] / 1024**2:.1f} MiB, archive {s['archive_bytes'] / 1024**2:.1f}"
          f" MiB, {s['conversations']} conversations, disk free "
          f"{s['disk_free_bytes'] / 1024**3:.1f} GiB")
    for f in rep["findings"]:
        print(f"{f['level']}: {f['message']}")


@app.command("resolve")
def resolve_cmd(
    bundle_file: Annotated[str, typer.Argument(help="The file's name (or a path to it)")],
    home: HomeOpt = None,
    note: Annotated[Optional[str], typer.Option(
        "--note", help="What was done about it, kept with the entry")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Settle a quarantined file by hand once it has been dealt with (recorded).

    The kept copy stays in H/quarantine/; 'vault status' stops listing it.
    """
    from vault import quarantine

    done = quarantine.resolve_by_hand(resolve_home(home), bundle_file, note)
    if as_json:
        emit_json({"resolved": done})
        return
    for r in done:
        say(f"resolved: {r['file']} quarantined at {r['at']} ({r['code']}); kept as "
            f"H/{r['kept']}")


@app.command("daemon")
def daemon_cmd(
    home: HomeOpt = None,
    device_match: Annotated[Optional[str], typer.Option(
        "--device-match", help='"usb", "any" or "PROP=value" (default: the config)')] = None,
) -> None:
    """Watch for removable media (udev), ingest, write receipts, say when safe to remove."""
    import importlib

    from vault.errors import UsageError

    try:
        daemon = importlib.import_module("vault.daemon")  # heavy (pyudev): imported late
    except ModuleNotFoundError as exc:
        if exc.name != "vault.daemon":
            raise
        raise UsageError("this chatvault has no media daemon (vault/daemon.py is missing)") \
            from None
    daemon.run(resolve_home(home), device_match=device_match)
