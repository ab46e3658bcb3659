"""``tarry retry``, ``cancel``, ``fork`` and ``purge``: operating runs from a shell.

Each of retry, cancel and fork takes either one RUN_ID or filters (``--workflow``,
``--status``, ``--since``, ``--until``) for the bulk form, never both; a bulk form
with no filter at all is refused unless ``--all`` says it is meant for every run.
``--dry-run`` (bulk forms and purge) only counts what would be done.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from .cli_args import Argument, Option
from .cli_common import AsJson, Database, call, cli, json_arg, print_json, say
from .cli_errors import usage
from .cli_json import run_json
from .durations import parse_duration
from .models import ENDED_STATUSES, RUN_STATUSES
from .operations import BulkResult

PANEL = "Operating runs"
LIVE_STATUSES = tuple(s for s in RUN_STATUSES if s not in ENDED_STATUSES)
ENDED = tuple(s for s in RUN_STATUSES if s in ENDED_STATUSES)

RunId = Annotated[
    str | None,
    Argument(metavar="RUN_ID", help="One run; leave out to select runs with the filters."),
]
Workflow = Annotated[str | None, Option("--workflow", help="Only runs of this workflow.")]
Since = Annotated[
    str | None,
    Option(
        "--since",
        help="Only runs created since then: a duration ago (1d, 12h, 1h30m) or an ISO time "
        "(UTC unless it names a zone).",
    ),
]
Until = Annotated[
    str | None,
    Option("--until", help="Only runs created before then: a duration ago or an ISO time."),
]
DryRun = Annotated[
    bool, Option("--dry-run", help="Only count the runs it applies to; change nothing.")
]
Every = Annotated[
    bool, Option("--all", help="Apply to every run of the status when no filter narrows.")
]
By = Annotated[
    str | None,
    Option("--by", help="Who does it, noted in the run's changes (default: the OS user)."),
]


def _status(allowed: tuple[str, ...]) -> Any:
    return Option("--status", help=f"Only runs in this status: {', '.join(allowed)}.")


@dataclass(frozen=True, slots=True)
class Filters:
    workflow: str | None
    status: str | None
    since: str | datetime | None
    until: str | datetime | None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.workflow, self.status, self.since, self.until))

    def kwargs(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "since": self.since, "until": self.until}


def filters(
    workflow: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    allowed: tuple[str, ...],
) -> Filters:
    if status is not None and status not in allowed:
        usage(f"--status {status!r}: expected one of {', '.join(allowed)}")
    return Filters(workflow, status, when_arg(since, "--since"), when_arg(until, "--until"))


def when_arg(value: str | None, option: str) -> str | datetime | None:
    """A duration ago, kept as the string the App takes, or an ISO time (naive: UTC)."""
    if value is None:
        return None
    try:
        parse_duration(value)
        return value
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        usage(
            f"{option} {value!r}: expected a duration ago like 1d, 12h or 30m, "
            "or an ISO time like 2026-11-01T09:00Z"
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def one_or_bulk(
    verb: str, run_id: str | None, where: Filters, every: bool, *, what: str, dry_run: bool
) -> bool:
    """Whether this is the bulk form; refuse a mix of both forms, or a bulk form
    with nothing narrowing it and no ``--all``."""
    if run_id is not None:
        if where.given or every:
            usage(
                f"give a RUN_ID or filters (--workflow, --status, --since, --until, --all), "
                f"not both: {verb} {run_id} acts on that run alone"
            )
        if dry_run:
            usage(f"--dry-run applies to the bulk form: {verb} runs by filters, not a RUN_ID")
        return False
    if not where.given and not every:
        usage(
            f"{verb} needs a RUN_ID, or filters (--workflow, --status, --since, --until) "
            f"to {verb} runs in bulk, or --all to {verb} every {what} run"
        )
    return True


def os_user() -> str | None:
    """The person running the command, for ``--by``."""
    name = os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def runs_count(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def print_bulk(result: BulkResult, verb: str, past: str, as_json: bool, note: str = "") -> None:
    if as_json:
        print_json(
            {
                "matched": result.matched,
                "done": result.done,
                "skipped": result.skipped,
                "dry_run": result.dry_run,
            }
        )
        return
    if result.dry_run:
        say(f"would {verb} {runs_count(result.matched)}{note}")
        return
    say(
        f"matched {runs_count(result.matched)}: {past} {len(result.done)}{note}, "
        f"skipped {len(result.skipped)}"
    )
    for run_id in result.done:
        say(f"  {past} {run_id}")
    for run_id, why in result.skipped.items():
        say(f"  skipped {run_id}: {why}")


# -- the commands ------------------------------------------------------------------------


@cli.command(group=PANEL)
def retry(
    run_id: RunId = None,
    workflow: Workflow = None,
    status: Annotated[str | None, _status(("failed", "cancelled"))] = None,
    since: Since = None,
    until: Until = None,
    every: Every = False,
    dry_run: DryRun = False,
    by: By = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Resume a failed or cancelled run where it stopped, or every run the filters select.

    Completed steps keep their results; the failed step runs again with a fresh budget.

    The bulk form retries failed runs, or cancelled ones with --status cancelled.
    """
    where = filters(workflow, status, since, until, ("failed", "cancelled"))
    who = by if by is not None else os_user()
    if not one_or_bulk("retry", run_id, where, every, what="failed", dry_run=dry_run):
        assert run_id is not None
        found = call(database, lambda app: app.retry(run_id, by=who))
        if as_json:
            print_json(run_json(found, with_steps=False))
        else:
            by_whom = f" by {who}" if who else ""
            say(f"run {found.id}: {found.status} (retried{by_whom})")
        return
    result = call(
        database,
        lambda app: app.retry_runs(
            status=where.status or "failed", dry_run=dry_run, by=who, **where.kwargs()
        ),
    )
    print_bulk(result, "retry", "retried", as_json)


@cli.command(group=PANEL)
def cancel(
    run_id: RunId = None,
    reason: Annotated[str | None, Option("--reason", help="Why, kept as its error.")] = None,
    no_children: Annotated[
        bool,
        Option("--no-children", help="Leave the runs it invoked running."),
    ] = False,
    workflow: Workflow = None,
    status: Annotated[str | None, _status(LIVE_STATUSES)] = None,
    since: Since = None,
    until: Until = None,
    every: Every = False,
    dry_run: DryRun = False,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a run and the runs it invoked, or every unfinished run the filters select.

    A queued or parked run is cancelled at once, a running one at its next step.
    """
    where = filters(workflow, status, since, until, LIVE_STATUSES)
    if not one_or_bulk("cancel", run_id, where, every, what="unfinished", dry_run=dry_run):
        assert run_id is not None
        found = call(database, lambda app: app.cancel(run_id, reason, children=not no_children))
        if as_json:
            print_json(run_json(found, with_steps=False))
        else:
            say(f"run {found.id}: {found.status}")
        return
    result = call(
        database,
        lambda app: app.cancel_runs(
            reason, status=where.status, dry_run=dry_run, children=not no_children, **where.kwargs()
        ),
    )
    print_bulk(result, "cancel", "cancelled", as_json)


@cli.command(group=PANEL)
def fork(
    from_step: Annotated[
        str, Option("--from-step", help="The step to run anew; earlier ones are reused.")
    ],
    run_id: RunId = None,
    payload: Annotated[
        str | None,
        Option("--payload", help="JSON payload of the new run (default: the original's)."),
    ] = None,
    new_run_id: Annotated[
        str | None, Option("--run-id", help="Id of the new run (one run only).")
    ] = None,
    workflow: Workflow = None,
    status: Annotated[str | None, _status(ENDED)] = None,
    since: Since = None,
    until: Until = None,
    every: Every = False,
    dry_run: DryRun = False,
    by: By = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Run an ended run again from a step, as a new run; prints the new run's id.

    The new run reuses the results of the steps before --from-step and runs on from it.

    The bulk form forks every ended run the filters select.
    """
    where = filters(workflow, status, since, until, ENDED)
    who = by if by is not None else os_user()
    if not one_or_bulk("fork", run_id, where, every, what="ended", dry_run=dry_run):
        assert run_id is not None
        data = json_arg(payload, "--payload")
        created = call(
            database,
            lambda app: app.fork(run_id, from_step, data, new_run_id=new_run_id, by=who),
        )
        if as_json:
            print_json({"run_id": created, "forked_from": {"run_id": run_id, "step": from_step}})
        else:
            say(created)
        return
    if payload is not None or new_run_id is not None:
        usage("--payload and --run-id apply to one RUN_ID; a bulk fork keeps each payload")
    result = call(
        database,
        lambda app: app.fork_runs(
            from_step, status=where.status, dry_run=dry_run, by=who, **where.kwargs()
        ),
    )
    print_bulk(result, "fork", "forked", as_json, note=f" from step {from_step}")


@cli.command(group=PANEL)
def purge(
    older_than: Annotated[
        str,
        Option("--older-than", help="Delete runs that ended longer ago than this (30d)."),
    ],
    workflow: Workflow = None,
    dry_run: Annotated[
        bool, Option("--dry-run", help="Only count the runs it would delete.")
    ] = False,
    export: Annotated[
        Path | None,
        Option(
            "--export",
            help="Append each run (steps, attempts, changes) to this file as a JSON line "
            "before deleting it.",
        ),
    ] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Delete ended runs (never one still going) with their steps and history."""
    try:
        parse_duration(older_than)
    except ValueError as exc:
        usage(f"--older-than: {exc}")
    age = f"that ended more than {older_than} ago"
    if dry_run:
        count = call(database, lambda app: app.purge(older_than, workflow=workflow, dry_run=True))
        written = None
    else:
        try:
            sink = None if export is None else open(export, "ab")  # noqa: SIM115
        except OSError as exc:
            usage(f"--export {str(export)!r}: {exc.strerror or exc}")
        try:
            count = call(
                database, lambda app: app.purge(older_than, workflow=workflow, export=sink)
            )
        finally:
            if sink is not None:
                sink.close()
        written = None if export is None else str(export)
    if as_json:
        print_json({"purged": count, "dry_run": dry_run, "export": written})
    elif dry_run:
        say(f"would purge {runs_count(count)} {age}")
    else:
        into = f"; written to {written} first" if written else ""
        say(f"purged {runs_count(count)} {age}{into}")
