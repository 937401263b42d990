"""Options and output helpers shared by every command family.

Data goes to stdout (a table for people, one JSON document with ``--json``);
messages and progress go to stderr. Errors are raised as
:class:`~vault.errors.ChatvaultError` and turned into one stderr line (or a
JSON object) and an exit code by :func:`vault.cli.main`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vault import canonical

DEFAULT_HOME = Path("/var/lib/chatvault")

HomeOpt = Annotated[
    Optional[Path],
    typer.Option("--home", help="Home folder (default: $CHATVAULT_HOME or /var/lib/chatvault)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")]


def resolve_home(home: Path | None) -> Path:
    if home is not None:
        return home
    env = os.environ.get("CHATVAULT_HOME")
    return Path(env) if env else DEFAULT_HOME


@contextlib.contextmanager
def status_output(code: int) -> Any:
    """Print a status command's report; a reader that went away keeps its exit ``code``.

    ``status | head -1`` closes the pipe early; click turned the broken pipe
    into exit 1, which monitoring reads as WARNING whatever was judged.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        from vault.quickcli import devnull_stdout

        devnull_stdout()
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    sys.stdout.write(canonical.dumps(obj).decode("utf-8") + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A line for the person at the terminal (stderr)."""
    sys.stderr.write(message + "\n")


def show_progress(quiet: bool = False) -> bool:
    """Progress bars only on a terminal, never in scripts or with --quiet."""
    return not quiet and sys.stderr.isatty()


def refuse_same_file(given: Path, out: Path) -> None:
    """Refuse an output that is the input file itself (``-o`` repeating the input).

    The output replaces its target atomically once written, so the input
    (an export, or a bundle whose only copy it may be) was lost without a
    word; ``bundle seal`` left a file only the recipients can open.
    """
    from vault.errors import UsageError

    if str(out) == "-":
        # '-o -' is read as standard output by most tools; here it would be a file named '-'
        raise UsageError("-o - (standard output) is not supported: the output is written "
                         "atomically to a file; give a file name")
    try:
        same = os.path.samefile(given, out)
    except OSError:
        return
    if same:
        raise UsageError(f"-o {out} is the input file itself; writing it would replace the "
                         "input: give another output file")
