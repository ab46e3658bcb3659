"""How the ``tarry`` command reports what went wrong.

Every error is one line saying what was wrong and, under it, one ``hint:`` line
saying what to do, on stderr; with ``--json`` it is one JSON object on stdout,
``{"error": {"type", "message", "hint"}}`` (the API's error body plus the hint),
so a script reads one stream whatever happens. Exit codes: 1 for an error tarry
reported (no such run, no such database, a missing extra, a busy port), 2 for
bad usage (an unknown option, bad JSON, a TARGET that does not import or holds no
App). The parser's errors go through :func:`run_command` to get the same form.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import orjson

from .cli_args import CommandLine, Exit, UsageProblem
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
        sys.stdout.flush()
        what = f"{kind}: {message}" if kind else message
        sys.stderr.write(f"error: {what}\n" + (f"hint: {hint}\n" if hint else ""))
    raise Exit(code)


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


def run_command(cli: CommandLine) -> NoReturn:
    """Run the command line, its parse errors reported like tarry's own."""
    try:
        cli.main(sys.argv[1:])
        code = 0
    except UsageProblem as exc:
        code = _reported(str(exc), f"`{exc.command} --help` lists what it takes")
    except Exit as done:
        code = done.code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _reported(message: str, hint: str) -> int:
    try:
        report(None, message, hint, 2)
    except Exit as done:
        return done.code
