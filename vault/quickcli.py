"""The ``chatvault`` entry point: a one-shot subject lookup answered before Typer loads.

Typer and what it brings (click, rich, and pydantic for its option coercion)
take about a quarter of a second to import, which is most of the time of
``chatvault subject find``: a lookup a DPO runs again and again and that
should answer as fast as ``rg`` over the plaintext would. So this entry
point reads that one command's options itself when they are plain (only the
options the command documents, as ``--opt value`` or ``--opt=value``) and
runs the very function the Typer command runs, :func:`subject_find`.
Anything else (``--help``, an unknown or misspelt option, a repeated
single-valued one, any other command) goes to the full application, which
answers exactly as before. ``tests/test_quickcli.py`` holds both paths to
the same output.

What the lookup does not use is not imported on its way: phonenumbers (only
for a ``--phone``), PyNaCl, Typer, rich, pydantic, sqlite-utils, and logging.
Nothing on that path logs, so the quick lane sets logging up only when
``CHATVAULT_LOG`` asks for a level or something imported logging already;
``tests/test_quickcli_imports.py`` holds all of this in a fresh process.

:func:`guarded` is the top-level error policy, shared by both paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from vault.errors import EXIT_OTHER, ChatvaultError

#: ``subject find`` options: repeatable, single-valued, and flags
_MANY = {"--email": "email", "--phone": "phone", "--name": "name", "--id": "ids",
         "--customer-id": "customer_id"}
_ONE = {"--since": "since", "--until": "until", "--source": "source",
        "--purpose": "purpose", "--home": "home"}
_FLAGS = {"--json": "as_json"}
#: commands that judge (exit 0 / 1 / 2: OK / WARNING / CRITICAL, as monitoring plugins do)
STATUS_COMMANDS = {("vault", "status"), ("export", "status")}
#: what a status command exits with when it could not judge (UNKNOWN)
STATUS_UNKNOWN = 3


def main() -> None:
    """Console entry point (``chatvault``, ``python -m vault``)."""
    argv = sys.argv[1:]
    if argv[:2] == ["subject", "find"]:
        options = parse_find(argv[2:])
        if options is not None:
            guarded(lambda: subject_find(**options), logs="CHATVAULT_LOG" in os.environ
                    or "logging" in sys.modules)
            return
    from vault.cli import main as full

    full()


def parse_find(args: Sequence[str]) -> dict[str, Any] | None:
    """The options of a plain ``subject find``; None sends it to Typer instead."""
    out: dict[str, Any] = {key: [] for key in _MANY.values()}
    out.update({key: None for key in _ONE.values()})
    out["as_json"] = False
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in _FLAGS and not eq:
            out[_FLAGS[name]] = True
            i += 1
            continue
        if name not in _MANY and name not in _ONE:
            return None
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None  # a missing value, or one Typer may read otherwise
            value = args[i + 1]
            i += 1
        i += 1
        if name in _MANY:
            out[_MANY[name]].append(value)
        elif out[_ONE[name]] is not None:
            return None
        else:
            out[_ONE[name]] = value
    if out["home"] is not None:
        out["home"] = Path(out["home"])
    return out


def resolve_home(home: Path | None) -> Path:
    """``--home``, else ``$CHATVAULT_HOME``, else /var/lib/chatvault (as the CLI does)."""
    if home is not None:
        return home
    env = os.environ.get("CHATVAULT_HOME")
    return Path(env) if env else Path("/var/lib/chatvault")


def subject_find(*, email: list[str] | None = None, phone: list[str] | None = None,
                 name: list[str] | None = None, ids: list[str] | None = None,
                 customer_id: list[str] | None = None, since: str | None = None,
                 until: str | None = None, source: str | None = None,
                 purpose: str | None = None, home: Path | None = None,
                 as_json: bool = False) -> None:
    """``chatvault subject find``: matches on stdout, the tally on stderr."""
    from vault import canonical
    from vault.subjectlinks import link_lines
    from vault.subjects import Subject, find_for, open_vault

    low, high = window(since, until)
    with open_vault(resolve_home(home)) as v:
        subject = Subject.parse(emails=email or [], phones=phone or [], names=name or [],
                                ids=ids or [], customer_ids=customer_id or [],
                                region=v.region)
        out = find_for(v, subject, since=low, until=high, source=source, purpose=purpose)
    notes = subject.notes + (subject.doubts if not out["exact"] else [])
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    if as_json:
        if notes:  # how the identifiers given were read, for scripts too
            out["notes"] = notes
        sys.stdout.write(canonical.dumps(out).decode("utf-8") + "\n")
        sys.stdout.flush()
        return
    for label, exact in (("exact matches", True), ("NEEDS REVIEW (not exact)", False)):
        rows = [r for r in out["results"] if (r["match"] == "exact") == exact]
        if rows:
            print(f"{label}:")
        for r in rows:
            print(f"  {r['source']}/{r['conversation_id']}  {r['started_at']}  "
                  f"{'; '.join(r['reasons'])}")
    for line in link_lines(out["linked"]):
        print(line)
    sys.stderr.write(f"{out['exact']} exact, {out['needs_review']} need review"
                     + (f"; {out['restricted_hidden']} hidden by an Art. 18 restriction"
                        if out["restricted_hidden"] else "") + "\n")


# -- the error policy of every command -------------------------------------------------

def setup_logging() -> None:
    import logging

    level = os.environ.get("CHATVAULT_LOG", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def guarded(run: Callable[[], Any], logs: bool = True) -> None:
    """Run a command and map failures to exit codes.

    Usage errors are Typer's own (exit 2); chatvault's failures become one
    stderr line (plus a JSON object with ``--json``) and their exit code;
    anything else is an internal error (exit 1, traceback only with
    ``CHATVAULT_DEBUG=1``); SQLite's "database is locked" is
    :class:`vault.errors.StoreBusy`. A status command exits 3 (UNKNOWN) for
    every failure and whenever it stops before its :func:`verdict`, usage
    errors included. ``logs=False`` skips setting logging up, for a command
    that never logs (importing logging is a few milliseconds).
    """
    if logs:
        setup_logging()
    wants_json = "--json" in sys.argv[1:]
    status = _is_status_command(sys.argv[1:])
    global _verdict
    _verdict = None
    try:
        try:
            run()
        except ChatvaultError as exc:
            fail(exc, wants_json, status)
        except BrokenPipeError:
            _stdout_closed(status)
        except OSError as exc:
            from vault.atomic import media_error

            # a writer should have named its file; "file" would name nothing
            fail(media_error(exc, exc.filename), wants_json, status)
        except KeyboardInterrupt:
            sys.stderr.write("chatvault: interrupted\n")
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            busy = _busy(exc)
            if busy is not None:
                fail(busy, wants_json, status)
            if os.environ.get("CHATVAULT_DEBUG") == "1":
                raise
            _internal(exc, wants_json, STATUS_UNKNOWN if status else EXIT_OTHER)
    except SystemExit as exc:
        if status and _verdict is None and exc.code not in (0, None, STATUS_UNKNOWN):
            sys.exit(STATUS_UNKNOWN)  # stopped before judging: a usage error, say
        raise


def _stdout_closed(status: bool) -> NoReturn:
    """The reader of stdout went away (``| head``, ``| true``).

    A status command keeps the level it judged: monitoring that pipes it must
    not read a WARNING into an OK. Anything else exits 1, its output cut short.
    """
    devnull_stdout()
    if status and _verdict is not None:
        sys.exit(_verdict)
    sys.stderr.write("chatvault: standard output was closed before all was written\n")
    sys.exit(EXIT_OTHER)


def devnull_stdout() -> None:
    """No second BrokenPipeError when Python flushes stdout at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _internal(exc: Exception, wants_json: bool, code: int) -> NoReturn:
    """An internal error: one line on stderr, and with ``--json`` an object on stdout
    too (``error: internal``), so a script never reads an empty answer."""
    text = f"internal error: {type(exc).__name__}: {exc}"
    if wants_json:
        from vault import canonical

        sys.stdout.write(canonical.dumps({"error": "internal", "message": text,
                                          "exit_code": code}).decode("utf-8") + "\n")
    sys.stderr.write(f"chatvault: {text} (set CHATVAULT_DEBUG=1 for a traceback)\n")
    sys.exit(code)


def fail(exc: ChatvaultError, wants_json: bool, status: bool = False) -> NoReturn:
    """Report ``exc`` and exit with its code (3, UNKNOWN, for a status command)."""
    if status:
        exc.exit_code = STATUS_UNKNOWN
    try:
        report(exc, wants_json)
    except BrokenPipeError:  # the JSON's reader went away: the exit code still says it
        devnull_stdout()
    sys.exit(STATUS_UNKNOWN if status else exc.exit_code)


def _is_status_command(args: Sequence[str]) -> bool:
    words = [a for a in args if not a.startswith("-")][:2]
    return tuple(words) in STATUS_COMMANDS


def verdict(code: int) -> int:
    """Record that a status command judged (OK / WARNING / CRITICAL) and return ``code``.

    A status command that exits without a verdict (click's own usage errors
    exit 2, which monitoring would read as CRITICAL) exits 3, UNKNOWN, in
    :func:`guarded`.
    """
    global _verdict
    _verdict = code
    return code


_verdict: int | None = None


def window(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``--since``/``--until`` as UTC instants; a window that ends before it starts is
    a typo, refused (exit 2) rather than answered with "nothing found"."""
    from vault import timestamps
    from vault.errors import UsageError
    from vault.subjects import day_bound

    low, high = day_bound(since), day_bound(until, True)
    if low and high and timestamps.parse(low) > timestamps.parse(high):
        raise UsageError(f"--since {since} is after --until {until}: nothing could be found "
                         "in that window")
    return low, high


def _busy(exc: Exception) -> ChatvaultError | None:
    """SQLite's failures met outside the store module, as the operator should see them.

    "database is locked" is :class:`~vault.errors.StoreBusy`; a damaged file
    ("database disk image is malformed", found by a query long after the
    store was opened) is :class:`~vault.errors.StoreDamaged`, naming the
    store and what to do, not an internal error. So is a table or column of
    the schema gone from a store the migrations had made whole ("no such
    table: audit_log"): the file was changed outside chatvault.
    """
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
        return None
    from vault import store

    if store.is_busy(exc):
        return store.busy_error(_store_file())
    if store.is_damaged(exc) or _schema_gone(exc, sqlite3):
        return store.damaged_error(exc, _store_file())
    return None


def _schema_gone(exc: Exception, sqlite3: Any) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(
        ("no such table:", "no such column:"))


def _store_file() -> Path:
    """The store of the home the command line names (or the default home)."""
    from vault import store

    args = sys.argv[1:]
    home = next((a.partition("=")[2] for a in args if a.startswith("--home=")), None)
    if home is None and "--home" in args[:-1]:
        home = args[args.index("--home") + 1]
    return resolve_home(Path(home) if home else None) / store.FILE_NAME


def report(exc: ChatvaultError, wants_json: bool) -> None:
    if wants_json:
        from vault import canonical

        sys.stdout.write(canonical.dumps(exc.as_dict()).decode("utf-8") + "\n")
        sys.stdout.flush()
    sys.stderr.write(f"chatvault: {exc}\n")
