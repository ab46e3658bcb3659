"""What every ``tarry`` command module shares: the typer app, the consoles, the
common options, and the helpers that report errors with the CLI's exit codes
(0 success, 1 an error tarry reported, 2 bad usage).

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from .app import App
from .errors import TarryError
from .models import Run

T = TypeVar("T")

cli = typer.Typer(
    name="tarry",
    help="Durable workflows built around the pause: serve, work, start, signal, inspect, operate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output keeps whole run ids and keys on one line instead of wrapping at 80.
# No markup on stdout: run ids, keys and payloads are printed as they are.
out = Console(soft_wrap=False, markup=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        envvar="TARRY_DATABASE_URL",
        help="Store URL (sqlite:///path.db or postgresql://...); default ./.tarry/tarry.db.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


# -- helpers -------------------------------------------------------------------------------


def json_arg(value: str | None, option: str) -> Any:
    if value is None:
        return None
    from .server.strictjson import loads_strict

    try:
        return loads_strict(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None


def fail(exc: BaseException) -> NoReturn:
    err.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
    raise typer.Exit(1)


def usage(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def call(database: str | None, action: Callable[[App], Awaitable[T]]) -> T:
    """Run one client call on a fresh App and close it; report tarry's errors (exit 1)."""

    async def go() -> T:
        app = App(database)
        try:
            return await action(app)
        finally:
            await app.close()

    try:
        return asyncio.run(go())
    except (TarryError, ValueError, LookupError) as exc:
        fail(exc)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def run_json(run: Run, *, with_steps: bool) -> Any:
    from .server.schemas import run_out

    return run_out(run, with_steps=with_steps).model_dump(mode="json")


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
    """Import ``module:attr`` or ``path.py[:attr]`` and return the App it defines."""
    if database:
        os.environ["TARRY_DATABASE_URL"] = database  # for an App() built at import
    spec, _, attr = target.partition(":")
    attr = attr or "app"
    try:
        if spec.endswith(".py") or os.sep in spec:
            path = Path(spec).resolve()
            if not path.is_file():
                usage(f"no such file: {spec}")
            sys.path.insert(0, str(path.parent))
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None:
                usage(f"cannot import {spec}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(spec)
    except (ImportError, SyntaxError) as exc:
        usage(f"cannot import {spec!r}: {exc}")
    found: Any = module
    for part in attr.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, App):
        usage(f"{target!r} has no tarry.App named {attr!r} (got {type(found).__name__})")
    if database and found.database != database:
        usage(
            f"the App in {target!r} names its own database; --database / TARRY_DATABASE_URL "
            "only applies to an App() built without one"
        )
    return found
