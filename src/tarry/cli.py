"""The ``tarry`` command: serve, work, and drive runs from a shell.

Exit codes: 0 success, 1 an error tarry reported (no such run or database, strict
signal with no waiter, a missing extra, a busy port, ...), 2 bad usage (unknown
option, bad JSON, a TARGET that does not import). Only ``worker``, ``serve``,
``dev`` and ``init`` create a store; the other commands refuse one that does not
exist (``cli_store``). The client commands live here; ``cli_serve`` has those that
keep running (dev, serve, worker), ``cli_operate`` retry, cancel, fork and purge,
``cli_check``, ``cli_init`` and ``cli_tokens`` theirs, all on the one command line of
``cli_common``; these modules are the only readers of argv and the environment.
"""

from __future__ import annotations

from typing import Annotated

from . import (  # noqa: F401  (register their commands)
    cli_check,  # check
    cli_init,  # init
    cli_operate,  # retry, cancel, fork, purge
    cli_serve,  # dev, serve, worker
    cli_tokens,  # tokens
)
from .cli_args import Argument, Option
from .cli_common import (
    AsJson,
    Database,
    call,
    cli,
    json_arg,
    print_json,
    print_table,
    say,
    start_time_args,
    waits,
    when,
    with_now,
)
from .cli_errors import run_command, usage
from .cli_history import print_run, run_detail_json
from .cli_json import run_json
from .models import RUN_STATUSES
from .queued_reason import why_queued

# -- client commands -------------------------------------------------------------------------


@cli.command()
def start(
    workflow: Annotated[str, Argument(help="The workflow id.")],
    payload: Annotated[str | None, Option("--payload", help="JSON payload.")] = None,
    run_id: Annotated[str | None, Option("--run-id", help="Idempotency key.")] = None,
    delay: Annotated[
        str | None, Option("--delay", help="Start no sooner than this from now: 90s, 1h, 7d.")
    ] = None,
    start_at: Annotated[
        str | None,
        Option("--start-at", help="Start no sooner than this ISO time with its offset."),
    ] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Start a run of WORKFLOW; prints its run id.

    WORKFLOW must have been registered in the store: by a worker for it, or `tarry init`.
    With --delay or --start-at the run stays queued until then (cancel it meanwhile and
    it never runs).
    """
    data = json_arg(payload, "--payload")
    later = start_time_args(delay, start_at)
    created = call(
        database,
        lambda app: app.start(workflow, data, run_id=run_id, delay=delay, start_at=later),
        workflow=workflow,
    )
    if as_json:
        print_json({"run_id": created})
    else:
        say(created)


@cli.command("send-event")
def send_event(
    name: Annotated[str, Argument(help="Event name, e.g. app/account.created.")],
    data: Annotated[str | None, Option("--data", help="JSON data.")] = None,
    event_id: Annotated[str | None, Option("--id", help="Dedupe id (24 h).")] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Send an event: start the workflows it triggers, resume the runs it matches."""
    value = json_arg(data, "--data")
    result = call(database, lambda app: app.send_event(name, value, id=event_id))
    if as_json:
        print_json(
            {"event_ids": result.event_ids, "started": result.started, "resumed": result.resumed}
        )
        return
    say(
        f"event {', '.join(result.event_ids)}: started {len(result.started)} run(s) "
        f"{' '.join(result.started)}; resumed {len(result.resumed)} {' '.join(result.resumed)}"
    )


@cli.command("signal")
def send_signal(
    key: Annotated[str, Argument(help="Signal key, e.g. approval:order-42.")],
    data: Annotated[str | None, Option("--data", help="JSON data (default {}).")] = None,
    strict: Annotated[
        bool, Option("--strict", help="Fail (exit 1) if no run waits on KEY.")
    ] = False,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Send a signal to the run waiting on KEY (buffered if none waits, unless --strict)."""
    value = {} if data is None else json_arg(data, "--data")
    result = call(database, lambda app: app.send_signal(key, value, strict=strict))
    if as_json:
        print_json({"status": result.status, "run_id": result.run_id})
    elif result.run_id:
        say(f"{result.status}: run {result.run_id}")
    else:
        say(f"{result.status}: no run waits on {key!r} yet")


@cli.command()
def message(
    run_id: Annotated[str, Argument(help="The run whose mailbox receives it.")],
    name: Annotated[str, Argument(help="Message name.")],
    data: Annotated[str | None, Option("--data", help="JSON data (default {}).")] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Append a message to a run's mailbox."""
    value = {} if data is None else json_arg(data, "--data")
    call(database, lambda app: app.send_message(run_id, name, value))
    if as_json:
        print_json({"run_id": run_id, "name": name})
    else:
        say(f"sent {name!r} to run {run_id}")


@cli.command()
def runs(
    status: Annotated[
        str | None, Option("--status", help=f"One of {', '.join(RUN_STATUSES)}.")
    ] = None,
    workflow: Annotated[str | None, Option("--workflow", help="Workflow id.")] = None,
    limit: Annotated[int, Option("--limit", min=1, max=1000)] = 50,
    cursor: Annotated[str | None, Option("--cursor", help="next_cursor of a page.")] = None,
    version: Annotated[
        str | None, Option("--version", help="Only runs started on this code version.")
    ] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in RUN_STATUSES:
        usage(f"--status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
    page, now = call(
        database,
        lambda app: with_now(
            app,
            app.list_runs(
                status=status, workflow=workflow, limit=limit, cursor=cursor, version=version
            ),
        ),
    )
    if as_json:
        items = [run_json(r, with_steps=False, now=now) for r in page.items]
        print_json({"items": items, "next_cursor": page.next_cursor})
        return
    if not page.items:
        say("no runs" + (" match" if status or workflow or version else ""))
        return
    rows = [
        [
            r.id,
            r.workflow,
            r.version or "",
            r.status,
            waits(r) or why_queued(r, now) or "",
            when(r.created_at),
        ]
        for r in page.items
    ]
    print_table(["run", "workflow", "version", "status", "waiting for", "created (UTC)"], rows)
    if page.next_cursor:
        say(f"more: --cursor {page.next_cursor}")


@cli.command("run")
def show_run(
    run_id: Annotated[str, Argument(help="The run id.")],
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Show a run: status, what it waits for, its steps, failures and changes.

    Failed attempts come with their tracebacks; changes say who retried it, or its origin.
    """
    found, now = call(database, lambda app: with_now(app, app.get_run(run_id)))
    if as_json:
        print_json(run_detail_json(found, now))
        return
    print_run(found, now)


def main() -> None:
    run_command(cli)


if __name__ == "__main__":
    main()
