"""What every ``tarry`` command module shares: the command line, printing, the
common options, calling an App, and loading a TARGET; errors are reported through
``cli_errors`` with the CLI's exit codes (0 success, 1 an error tarry reported,
2 bad usage).

The command modules import this one, never each other: ``cli`` imports
``cli_operate`` to register its commands, and both build on this module.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar

import orjson

from . import __version__
from .app import App
from .cli_args import CommandLine, Option
from .cli_errors import fail, usage
from .cli_store import database_url, require_store
from .durations import parse_duration
from .errors import TarryError
from .models import Run

T = TypeVar("T")

cli = CommandLine(
    prog="tarry",
    description="Durable workflows built around the pause: serve, work, start, signal, "
    "inspect, operate.\nExit codes: 0 success, 1 an error tarry reported, 2 bad usage.",
    version=__version__,
)


def say(text: str = "") -> None:
    """One line on stdout, as it is: run ids, keys and payloads are never wrapped."""
    sys.stdout.write(f"{text}\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, the last one left as it is."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers) - 1)]
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        say("  ".join([*cells, row[-1]]).rstrip())


Database = Annotated[
    str | None,
    Option(
        "--database",
        "-d",
        envvar="TARRY_DATABASE_URL",
        help="Store URL (sqlite:///path.db or postgresql://...); default ./.tarry/tarry.db.",
    ),
]
AsJson = Annotated[bool, Option("--json", help="Print JSON for scripts.")]


# -- helpers -------------------------------------------------------------------------------


def json_arg(value: str | None, option: str) -> Any:
    if value is None:
        return None
    from .server.strictjson import loads_strict

    try:
        return loads_strict(value)
    except json.JSONDecodeError as exc:
        usage(f"{option}: not valid JSON: {exc}")


def call(
    database: str | None, action: Callable[[App], Awaitable[T]], *, workflow: str | None = None
) -> T:
    """Run one client call on a fresh App and close it; report tarry's errors (exit 1).

    The store must exist already (a client command never creates one), and with
    ``workflow`` that workflow must have been registered in it."""
    url = database_url(database)

    async def go() -> T:
        app = App(url)
        try:
            return await action(app)
        finally:
            await app.close()

    try:
        require_store(url, workflow=workflow)
        return asyncio.run(go())
    except (TarryError, ValueError, LookupError, OSError) as exc:
        fail(exc)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


async def with_now(app: App, pending: Awaitable[T]) -> tuple[T, float]:
    """What ``pending`` answers, and the App's clock after it (for a queued run's reason)."""
    return await pending, app.clock.now()


def start_time_args(delay: str | None, start_at: str | None) -> datetime | None:
    """``--delay`` checked and ``--start-at`` read, or bad usage (exit 2) naming them."""
    if delay is not None and start_at is not None:
        usage("pass --delay or --start-at, not both")
    if delay is not None:
        try:
            parse_duration(delay)
        except ValueError as exc:
            usage(f"--delay: {exc}")
    if start_at is None:
        return None
    try:
        moment = datetime.fromisoformat(start_at)
    except ValueError:
        usage(f"--start-at {start_at!r} is not an ISO 8601 time, e.g. 2030-01-01T09:00:00+01:00")
    if moment.tzinfo is None:
        usage(f"--start-at {start_at!r} has no offset: add one, e.g. Z or +01:00")
    return moment


def when(run_time: Any) -> str:
    return "" if run_time is None else run_time.strftime("%Y-%m-%d %H:%M:%S")


def waits(run: Run) -> str:
    """Short: ``signal KEY until ...``, ``all STEP: 1 of 2 arrived until ...``,
    ``2 waits: signal, all 1 of 2 arrived; first deadline ...``."""
    from .waiting import summary, tally

    w = run.waiting_for
    if w is None:
        return ""
    if w.kind == "branches":
        first = f"; first deadline {when(w.expires_at)}" if w.expires_at else ""
        return f"{summary(w)}{first}"
    until = f" until {when(w.expires_at)}" if w.expires_at else ""
    if w.conditions:
        return f"{w.kind} {w.step}: {tally(w)}{until}"
    return f"{w.kind} {w.key or w.step}{until}"


def load_app(target: str, database: str | None) -> App:
    """Import ``module:attr`` or ``path.py[:attr]`` and return the App it defines.

    A TARGET that cannot be imported is bad usage (exit 2), reported as where it
    failed and why in one line; tarry's own error raised while importing it (a
    ``ConfigError`` from its ``App(...)``, say) is reported as such (exit 1)."""
    if database:
        os.environ["TARRY_DATABASE_URL"] = database  # for an App() built at import
    spec, _, attr = target.partition(":")
    attr = attr or "app"
    module = _import_target(spec)
    found: Any = module
    for part in attr.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, App):
        usage(
            f"{target!r} has no tarry.App named {attr!r} (got {type(found).__name__})",
            hint="TARGET is module:attr or path/to/file.py[:attr], attr defaulting to `app`",
        )
    if database and found.database != database:
        usage(
            f"the App in {target!r} names its own database; --database / TARRY_DATABASE_URL "
            "only applies to an App() built without one",
            hint="build the App with tarry.App() to choose its database from the command line",
        )
    return found


def _import_target(spec: str) -> ModuleType:
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            usage(f"no such file: {spec} (looked at {path})", hint=_TARGET_HINT)
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            usage(f"cannot import {spec}: not a Python module", hint=_TARGET_HINT)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        loader = module_spec.loader

        def execute() -> ModuleType:
            loader.exec_module(module)
            return module

        return _imported(spec, execute)
    sys.path.insert(0, os.getcwd())
    return _imported(spec, lambda: importlib.import_module(spec))


def _imported(spec: str, load: Callable[[], ModuleType]) -> ModuleType:
    """``load()``, its failure reported in one line: where it happened and why."""
    try:
        return load()
    except Exception as exc:
        where = _where(exc)
        if isinstance(exc, TarryError):
            fail(exc, hint=f"raised while importing {spec!r}{where}")
        if isinstance(exc, ModuleNotFoundError) and exc.name == spec and not where:
            usage(f"no module named {spec!r} (from {os.getcwd()})", hint=_TARGET_HINT)
        usage(
            f"cannot import {spec!r}: {type(exc).__name__}: {_first_line(exc)}{where}",
            hint="fix that line, or run the file with python to see the whole traceback",
        )


_TARGET_HINT = "TARGET is module:app (importable from the current directory) or path/to/file.py"


def _where(exc: BaseException) -> str:
    """`` (at FILE, line N)`` for the deepest frame of the error outside importlib."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}, line {exc.lineno})"
    machinery = (__file__, importlib.__file__)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<frozen") and f.filename not in machinery
    ]
    if not frames:
        return ""
    return f" (at {frames[-1].filename}, line {frames[-1].lineno})"


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return exc.msg
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
