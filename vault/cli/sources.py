"""``chatvault sources ...``: list the export readers, preview an export, convert it.

None of these needs a home: they read platform exports and write canonical
JSONL, which ``bundle seal`` or the exporter then take. Problems with single
entries of an export are reported on stderr, once each, and the rest goes
through; any problem makes the exit 3 after the rest is written (or
shown), as ``export run`` exits for the same export: a skipped message, a
conversation too large for a record and a file skipped in a folder all leave
data out. An export in which nothing can be read (a FIFO or device given as
the path, a folder holding no conversation) ends with exit 3, for preview as
for convert.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from vault.cli.common import JsonOpt, emit_json, refuse_same_file, say
from vault.errors import EXIT_REJECTED

if TYPE_CHECKING:
    from vault.sources import ReadOptions

app = typer.Typer(no_args_is_help=True)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Export format (see 'formats')")]
TzOpt = Annotated[Optional[str], typer.Option(
    "--timezone", help="Zone of local times in the export, e.g. Europe/London")]
RegionOpt = Annotated[Optional[str], typer.Option(
    "--phone-region", help="Region for numbers written without +, e.g. GB")]
SourceOpt = Annotated[str, typer.Option("--source", help=(
    "Source name stored on each record; some formats derive conversation ids from it "
    "(WhatsApp, JSONL logs), so give the name the exporter's config gives this source "
    "to see the ids it archives"))]
#: one default for preview and convert, so both show the same ids
DEFAULT_SOURCE = "default"


def _options(source: str, timezone: str | None, phone_region: str | None) -> "ReadOptions":
    """Read options from the command line; each problem is printed on stderr."""
    from vault import identifiers, timestamps
    from vault.errors import UsageError
    from vault.sources import ReadOptions

    try:
        if timezone:
            timestamps.zone(timezone)
        region = identifiers.region(phone_region)
    except (ValueError, timestamps.TimestampError) as exc:
        raise UsageError(str(exc)) from None
    return ReadOptions(source=source, timezone=timezone, phone_region=region,
                       on_problem=_ProblemPrinter())


class _ProblemPrinter:
    """Print the first :data:`SHOWN` problems; count the rest (a wrong --format is many)."""

    SHOWN = 20

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, problem: object) -> None:
        self.seen += 1
        if self.seen <= self.SHOWN:
            say(f"problem: {problem}")
        elif self.seen == self.SHOWN + 1:
            say(f"problem: ... more problems not shown (only the first {self.SHOWN} are; "
                "is --format right for this file?)")


@app.command("list", hidden=True)  # what the family's help once said: kept as an alias
@app.command("formats")
def formats(as_json: JsonOpt = False) -> None:
    """List the export formats chatvault reads (and which it can write back)."""
    from vault import sources

    rows = sources.describe()
    if as_json:
        emit_json({"formats": [{"name": n, "description": d, "writes_native": w}
                               for n, d, w in rows]})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("format", "description", "writes native")
    for name, description, writes in rows:
        table.add_row(name, description, "yes" if writes else "no")
    Console().print(table)


def _summary(conv: dict[str, Any], region: str | None) -> dict[str, Any]:
    from vault import identifiers

    found = identifiers.collect(conv, region)
    messages = conv["messages"]
    return {
        "conversation_id": conv["conversation_id"], "started_at": conv["started_at"],
        "title": conv.get("title") or conv.get("channel") or "",
        "participants": len(conv["participants"]),
        "messages": sum(1 for m in messages if not m.get("system")),
        "system_events": sum(1 for m in messages if m.get("system")),
        "attachments": sum(len(m.get("attachments") or []) for m in messages),
        "emails": found.emails, "phones": found.phones,
        "unparsed_phones": found.unparsed_phones,
    }


@app.command("preview")
def preview(
    path: Annotated[Path, typer.Argument(help="Export file or folder")],
    fmt: FormatOpt,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Conversations to show")] = 5,
    timezone: TzOpt = None,
    phone_region: RegionOpt = None,
    source: SourceOpt = DEFAULT_SOURCE,
    as_json: JsonOpt = False,
) -> None:
    """Show the first conversations of an export as convert writes them.

    They are archived the same, ids included, when --source is the exporter's
    name for this source: some formats derive conversation ids from it.
    """
    from vault import sources
    from vault.errors import UnreadableExport

    options = _options(source, timezone, phone_region)
    shown: list[dict[str, Any]] = []
    for conv in sources.read(path, fmt, options):
        shown.append(conv)
        if len(shown) >= limit:
            break
    if not shown:  # as convert refuses it: an input that gives nothing is no export
        raise UnreadableExport(f"no conversation could be read as {fmt}", path=path)
    if as_json:
        emit_json({"conversations": shown,
                   "problems": [p.__dict__ for p in options.problems]})
    else:
        _show(shown, options.phone_region)
    if options.problems:
        raise typer.Exit(EXIT_REJECTED)


def _show(shown: list[dict[str, Any]], region: str | None) -> None:
    """A table of the conversations, then the first messages of the first one."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    table = Table("conversation", "started (UTC)", "counts", "identifiers found")
    for conv in shown:
        s = _summary(conv, region)
        ids = "\n".join(s["emails"] + s["phones"])
        if s["unparsed_phones"]:
            ids += (f"\n{len(s['unparsed_phones'])} number(s) that do not parse"
                    + ("" if region else " (national ones need --phone-region)"))
        counts = (f"{s['participants']} people, {s['messages']} messages, "
                  f"{s['system_events']} events, {s['attachments']} files")
        # export text is untrusted: Text() never interprets it as markup
        table.add_row(Text(f"{s['conversation_id']}\n{s['title']}", overflow="fold"),
                      Text(s["started_at"], overflow="fold"), counts,
                      Text(ids.strip(), overflow="fold"))
    console.print(table)
    first = shown[0]
    people = {p["id"]: p.get("name") or p["id"] for p in first["participants"]}
    console.print(Text(f"first messages of {first['conversation_id']}:"))
    for msg in first["messages"][:10]:
        who = people.get(msg["from"], msg["from"]) if msg["from"] else "(system)"
        console.print(Text(f"  {msg['at']}  {who}: {msg['text'][:200]!r}"))


@app.command("convert")
def convert(
    path: Annotated[Path, typer.Argument(help="Export file or folder")],
    fmt: FormatOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Canonical JSONL file to write")],
    timezone: TzOpt = None,
    phone_region: RegionOpt = None,
    source: SourceOpt = DEFAULT_SOURCE,
    as_json: JsonOpt = False,
) -> None:
    """Convert an export to canonical JSONL (one conversation a line), atomically."""
    from vault import records, sources
    from vault.atomic import AtomicFile
    from vault.errors import UnreadableExport

    refuse_same_file(path, out)
    options = _options(source, timezone, phone_region)
    last = _last_occurrences(path, fmt, options)
    counts = {"conversations": 0, "messages": 0, "participants": 0, "replaced": 0}
    # temporary file, fsync, rename: an interrupted or refused run leaves no output
    with AtomicFile(out) as fh:
        for n, conv in enumerate(sources.read(path, fmt, options)):
            if last is not None and last.get(conv["conversation_id"]) != n:
                counts["replaced"] += 1
                continue
            line, summary = records.canonical_record(conv)
            fh.write(line + b"\n")
            counts["conversations"] += 1
            counts["messages"] += summary.messages
            counts["participants"] += summary.participants
        if not counts["conversations"]:
            raise UnreadableExport(f"no conversation could be read as {fmt}", path=path)

    refused = options.refusals
    if as_json:
        emit_json({"path": str(out), **counts, "problems": len(options.problems),
                   "refused": refused})
    else:
        say(f"wrote {counts['conversations']} conversations, {counts['messages']} messages "
            f"to {out}" + (f" ({counts['replaced']} earlier version(s) of a conversation "
                           "left for a later one, as export run does)"
                           if counts["replaced"] else "")
            + (f"; {len(options.problems)} problem(s) reported above"
               if options.problems else "")
            + (f", {refused} of them left data out" if refused else ""))
    if options.problems:  # export run exits 3 for the same export
        raise typer.Exit(EXIT_REJECTED)


def _last_occurrences(path: Path, fmt: str, shown: "ReadOptions") -> dict[str, int] | None:
    """Where each conversation id last occurs in the export, in reading order.

    A conversation met again (a growing chat in daily files, a WhatsApp chat
    exported as .txt and as .zip) is written once, in its last version, as
    export run seals it: canonical JSONL holds each conversation once, and
    ``bundle seal`` refuses a repeated id. This quiet first pass keeps only
    the ids; problems are said by the pass that writes.
    """
    from vault import sources

    from vault.errors import ChatvaultError

    quiet = sources.ReadOptions(source=shown.source, timezone=shown.timezone,
                                phone_region=shown.phone_region, quiet=True)
    last: dict[str, int] = {}
    try:
        for n, conv in enumerate(sources.read(path, fmt, quiet)):
            last[conv["conversation_id"]] = n
    except ChatvaultError:
        # the pass that writes meets it again, after saying each problem on the way
        # (a JSONL file with no readable line: the byte that is not UTF-8, line by line)
        return None
    return last

