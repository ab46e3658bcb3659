"""``tarry check``: replay the runs that wait against the code about to be deployed.

Reads the store, writes nothing (see ``tarry.check``). Exit 0 when every run would
resume cleanly, 1 when any would break (``--strict``: or draws a warning), 2 for
bad usage.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from .check import CheckReport
from .cli_args import Argument, Exit, Option
from .cli_common import AsJson, Database, cli, load_app, print_json, say
from .cli_errors import fail
from .cli_store import require_store
from .errors import TarryError


@cli.command()
def check(
    target: Annotated[str, Argument(help="The code to check: module:app or path.py[:app].")],
    database: Database = None,
    workflow: Annotated[str | None, Option("--workflow", help="Only this workflow.")] = None,
    strict: Annotated[bool, Option("--strict", help="Exit 1 on warnings too.")] = False,
    as_json: AsJson = False,
) -> None:
    """Replay every run that has not ended against TARGET's code, dry: report the runs
    this code would break (exit 1), without running a step or writing anything."""
    app = load_app(target, database)
    try:
        require_store(app.database)  # a check reads; it must not create the store
    except TarryError as exc:
        fail(exc)

    async def go() -> CheckReport:
        try:
            return await app.check(workflow=workflow)
        finally:
            await app.close()

    try:
        report = asyncio.run(go())
    except (TarryError, ValueError) as exc:
        fail(exc)
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)
    if not report.passed(strict=strict):
        raise Exit(1)


def _print(report: CheckReport) -> None:
    for run in report.runs:
        if run.verdict == "ok":
            continue
        say(f"{run.verdict.upper():8} {run.run_id}  {run.workflow} (version "
                  f"{run.version or 'unknown'})")  # fmt: skip
        for problem in run.problems:
            say(f"         {problem}")
        if run.traceback:
            for line in run.traceback.rstrip().splitlines():
                say(f"           {line}")
    if report.runs:
        say("workflow / version: ok, warning, error, unknown")
    for (name, version), counts in sorted(report.summary().items(), key=lambda i: str(i[0])):
        figures = ", ".join(str(counts[v]) for v in ("ok", "warning", "error", "unknown"))
        say(f"  {name} / {version or 'unknown'}: {figures}")
    errors, warnings = len(report.errors), len(report.warnings)
    say(
        f"checked {len(report.runs)} waiting runs: {errors} would break, {warnings} "
        f"warning{'s' if warnings != 1 else ''}"
    )
