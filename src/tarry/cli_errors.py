"""How the ``tarry`` command reports what went wrong.

Every error is one line saying what was wrong and, under it, one ``hint:`` line
saying what to do, on stderr; with ``--json`` it is one JSON object on stdout,
``{"error": {"type", "message", "hint"}}`` (the API's error body plus the hint),
so a script reads one stream whatever happens. Exit codes: 1 for an error tarry
reported (no such run, no such database, a missing extra, a busy port), 2 for
bad usage (an unknown option, bad JSON, a TARGET that does not import or holds no
App). Click's own usage errors go through :func:`run_command` to get the same form.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from .errors import (
    RunFinished,
    RunNotFound,
    RunStateError,
    SchemaTooNew,
    SignalConflict,
    SignalNotFound,
    StoreUnavailable,
    WorkflowNotFound,
)

err = Console(stderr=True)

# Click's error classes, found through typer's public BadParameter: typer vendors
# click in its recent releases and depends on it in older ones.
_CLICK = {kind.__name__: kind for kind in typer.BadParameter.__mro__}
UsageError: type[Exception] = _CLICK["UsageError"]
ClickException: type[Exception] = _CLICK["ClickException"]

# What to do about each error tarry reports, when the error carries no hint itself.
_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        RunNotFound,
        "`tarry runs` lists the runs of this store; check that --database or "
        "TARRY_DATABASE_URL names the store you mean",
    ),
    (
        WorkflowNotFound,
        "a worker (`tarry worker TARGET`) or `tarry init TARGET` records a TARGET's workflows",
    ),
    (
        SignalNotFound,
        "without --strict a signal nobody waits on is buffered for the next wait on its key",
    ),
    (RunFinished, "`tarry run RUN_ID` shows how the run ended"),
    (RunStateError, "`tarry run RUN_ID` shows the run's status"),
    (SignalConflict, "`tarry runs --status waiting` shows which run waits on the key"),
    (SchemaTooNew, "upgrade tarry (pip install -U tarry) to open this store"),
    (
        StoreUnavailable,
        "check that the database server is up and that the URL (--database or "
        "TARRY_DATABASE_URL) is right",
    ),
)


def json_wanted() -> bool:
    """Whether the command line asks for ``--json`` (read from argv, since a usage
    error stops before the options are parsed)."""
    return "--json" in sys.argv[1:]


def command_path() -> str:
    """``tarry COMMAND`` as typed, for hints."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:1]
    return " ".join(["tarry", *words])


def report(kind: str | None, message: str, hint: str | None, code: int) -> NoReturn:
    """Print one error (and its hint) and exit with ``code``."""
    if json_wanted():
        body = {"type": kind or ("UsageError" if code == 2 else "Error"), "message": message}
        sys.stdout.write(orjson.dumps({"error": {**body, "hint": hint}}).decode() + "\n")
    else:
        what = f"{kind}: {message}" if kind else message
        err.print(f"[bold red]error:[/] {escape(what)}", highlight=False, soft_wrap=True)
        if hint:
            err.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def hint_for(exc: BaseException) -> str | None:
    given = getattr(exc, "hint", None)
    if isinstance(given, str):
        return given
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return hint
    return _help_hint()


def _help_hint() -> str:
    return f"`{command_path()} --help` says what each argument and option takes"


def fail(exc: BaseException, hint: str | None = None) -> NoReturn:
    """An error tarry reported: exit 1."""
    report(type(exc).__name__, str(exc), hint or hint_for(exc), 1)


def usage(message: str, hint: str | None = None) -> NoReturn:
    """Bad usage: exit 2."""
    report(None, message, hint or _help_hint(), 2)


def run_command(cli: Callable[..., Any]) -> NoReturn:
    """Run the typer app with click's usage errors reported like tarry's own."""
    try:
        code = cli(standalone_mode=False)
    except UsageError as exc:
        code = _reported(exc, 2, f"`{command_path()} --help` lists what it takes")
    except ClickException as exc:
        code = _reported(exc, getattr(exc, "exit_code", 1), None)
    except typer.Abort:
        err.print("aborted", highlight=False)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _reported(exc: Exception, code: int, hint: str | None) -> int:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if not message:
        return code  # ``tarry`` alone: click printed the help, nothing went wrong to say
    try:
        report(None, message, hint, code)
    except typer.Exit as done:
        return int(done.exit_code)
