"""The ``tarry`` command: serve, work, and drive runs from a shell.

Exit codes: 0 success, 1 an error tarry reported (no such run or database, strict
signal with no waiter, a missing extra, a busy port, ...), 2 bad usage (unknown
option, bad JSON, a TARGET that does not import). Only ``worker``, ``serve``,
``dev`` and ``init`` create a store; the other commands refuse one that does not
exist (``cli_store``). The commands live here and in ``cli_operate`` (retry,
cancel, fork, purge) and ``cli_check``, on the one command line of ``cli_common``;
these modules are the only readers of argv and the environment.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import signal as signals
import socket
import sys
from typing import Annotated, NoReturn

from . import cli_check, cli_init, cli_operate, cli_tokens, logs  # noqa: F401  (register check, init; retry, cancel, fork, purge; tokens)
from .app import App
from .cli_args import Argument, Option
from .cli_common import (
    AsJson,
    Collector,
    Database,
    call,
    cli,
    json_arg,
    load_long_running,
    print_json,
    print_table,
    say,
    start_time_args,
    waits,
    when,
    with_now,
)
from .cli_errors import fail, report, run_command, usage
from .cli_history import print_run, run_detail_json
from .cli_json import run_json
from .errors import TarryError
from .models import RUN_STATUSES
from .queued_reason import why_queued
from .server import ServerExtraMissing, require_server

Target = Annotated[str, Argument(help="module:app, or a path/to/file.py that defines `app`.")]
Token = Annotated[
    str | None,
    Option(
        "--token",
        envvar="TARRY_API_TOKEN",
        help="Require this bearer token on the API and a login on the dashboard.",
    ),
]
Concurrency = Annotated[
    int | None,
    Option(
        "--concurrency",
        min=1,
        help="Runs a worker executes at once [default: 128 on SQLite, 256 on PostgreSQL].",
    ),
]
MaxBody = Annotated[int, Option("--max-body", min=1, help="Largest request body, in bytes.")]
LogLevel = Annotated[
    str | None,
    Option(
        "--log-level",
        envvar="TARRY_LOG_LEVEL",
        help="debug, info, warning or error [default: info; dev: warning].",
    ),
]
LogFormat = Annotated[
    str,
    Option("--log-format", envvar="TARRY_LOG_FORMAT", help="text, or json (one object per line)."),
]


def _logs(level: str | None, fmt: str, default: str) -> str:
    """Send tarry's records to stderr at ``level`` as ``fmt``; the level used."""
    chosen = (level or default).lower()
    try:
        logs.configure(chosen, fmt)
    except ValueError as exc:
        usage(str(exc))
    return chosen


# -- loading an App ------------------------------------------------------------------------


# -- serving -------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(
    app: App,
    *,
    host: str,
    port: int,
    token: str | None,
    concurrency: int | None,
    max_body: int,
    quiet: bool,
    log_level: str = "info",
) -> None:
    import uvicorn

    from .server import create_app

    if not token and not _is_loopback(host):
        _serve_refused(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)  # connections queue from now on, so the printed URL works at once
    except OSError as exc:
        sock.close()
        _listen_failed(exc, host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound}/"
    app.serve_at(url)  # token links point here unless public_url says otherwise
    if concurrency is None:
        concurrency = app.default_concurrency
    server_app = create_app(
        app, token=token, worker=True, concurrency=concurrency, max_body=max_body
    )
    config = uvicorn.Config(server_app, log_level=log_level, lifespan="on", access_log=not quiet)
    logging.getLogger("uvicorn.access").addFilter(logs.QuietPolling())
    server = uvicorn.Server(config)
    say(
        f"tarry: dashboard at {url}  (API {url}api/v1, docs {url}api/v1/docs)"
        f"{'  token required' if token else ''}"
    )
    say(f"tarry: store {app!r}; worker running in this process")
    sys.stdout.flush()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    # through the handler it found; with these no-ops a graceful stop exits 0.
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: None)
    asyncio.run(server.serve(sockets=[sock]))


@cli.command()
def dev(
    target: Target,
    port: Annotated[int, Option("--port", "-p", min=0, max=65535)] = 8000,
    database: Database = None,
    token: Token = None,
    concurrency: Concurrency = None,
    log_level: LogLevel = None,
    log_format: LogFormat = "text",
    collector: Collector = "tuned",
) -> None:
    """API, dashboard and a worker on 127.0.0.1, quiet logs; prints the dashboard URL."""
    _needs_server()
    level = _logs(log_level, log_format, "warning")
    app = load_long_running(target, database, collector)
    _serve(
        app,
        host="127.0.0.1",
        port=port,
        token=token,
        concurrency=concurrency,
        max_body=4 * 1024 * 1024,
        quiet=True,
        log_level=level,
    )


@cli.command()
def serve(
    target: Target,
    host: Annotated[str, Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Option("--port", "-p", min=0, max=65535)] = 8000,
    database: Database = None,
    token: Token = None,
    concurrency: Concurrency = None,
    max_body: MaxBody = 4 * 1024 * 1024,
    log_level: LogLevel = None,
    log_format: LogFormat = "text",
    collector: Collector = "tuned",
) -> None:
    """HTTP API, dashboard and a worker in one process."""
    _needs_server()
    if not token and not _is_loopback(host):
        _serve_refused(host)
    level = _logs(log_level, log_format, "info")
    app = load_long_running(target, database, collector)
    _serve(
        app,
        host=host,
        port=port,
        token=token,
        concurrency=concurrency,
        max_body=max_body,
        quiet=False,
        log_level=level,
    )


def _needs_server() -> None:
    """Refuse at once, naming the extra, when the API and dashboard cannot run here."""
    try:
        require_server()
    except ServerExtraMissing as exc:
        fail(exc)


def _listen_failed(exc: OSError, host: str, port: int) -> NoReturn:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        report(
            "OSError",
            f"port {port} on {host} is already in use ({reason})",
            "stop what listens there, or pass --port with another port (--port 0 picks a free one)",
            1,
        )
    report(
        "OSError",
        f"cannot listen on {host} port {port}: {reason}",
        "choose another --port" + (" or --host" if host != "127.0.0.1" else ""),
        1,
    )


def _serve_refused(host: str) -> NoReturn:
    usage(
        f"refusing to listen on {host} without a token: anyone who can reach it could "
        "start, signal and cancel runs. Pass --token or set TARRY_API_TOKEN, "
        "or listen on 127.0.0.1."
    )


@cli.command()
def worker(
    target: Target,
    database: Database = None,
    concurrency: Concurrency = None,
    log_level: LogLevel = None,
    log_format: LogFormat = "text",
    collector: Collector = "tuned",
) -> None:
    """Run a worker for the App's workflows until SIGINT or SIGTERM."""
    _logs(log_level, log_format, "info")
    app = load_long_running(target, database, collector)

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with app.worker(concurrency=concurrency):
                say(f"tarry: worker for {sorted(app.workflows)} on {app!r}")
                sys.stdout.flush()
                await stop.wait()
        finally:
            await app.close()

    try:
        asyncio.run(work())
    except (TarryError, OSError) as exc:
        fail(exc)


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
