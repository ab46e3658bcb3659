"""The commands that keep running: ``tarry worker``, ``serve`` and ``dev``.

Each loads the App, sets up the process it owns (its logs, its garbage collector:
``process_gc``) and runs a worker until SIGINT or SIGTERM; ``serve`` and ``dev`` run
the HTTP API and the dashboard on the worker's event loop (uvicorn). ``cli`` imports
this module to register them.
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

from . import logs
from .app import App
from .cli_args import Argument, Option
from .cli_common import Database, cli, load_app, say
from .cli_errors import fail, report, usage
from .errors import TarryError
from .process_gc import GcMode, parse_gc_mode, tune_gc
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
Collector = Annotated[
    str,
    Option(
        "--gc",
        envvar="TARRY_GC",
        help="The process's garbage collector: tuned (what the App loaded frozen, young "
        "passes every 10,000 objects) or python (as Python sets it) [default: tuned].",
    ),
]


def _logs(level: str | None, fmt: str, default: str) -> str:
    """Send tarry's records to stderr at ``level`` as ``fmt``; the level used."""
    chosen = (level or default).lower()
    try:
        logs.configure(chosen, fmt)
    except ValueError as exc:
        usage(str(exc))
    return chosen


def _loaded(
    target: str,
    database: str | None,
    collector: str,
    log_level: str | None,
    log_format: str,
    default_level: str,
) -> tuple[App, GcMode, str]:
    """What each of these commands does first: ``--gc`` read (bad usage before the
    TARGET is imported), the logs set, the App loaded; the App, the collector's mode
    (for the caller to set once what the process runs on is loaded: ``tune_gc``) and
    the log level used."""
    try:
        mode = parse_gc_mode(collector)
    except ValueError as exc:
        usage(str(exc))
    level = _logs(log_level, log_format, default_level)
    return load_app(target, database), mode, level


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
    collector: GcMode,
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
    tune_gc(collector)  # the server's code loaded too: frozen with the App's
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
    app, mode, level = _loaded(target, database, collector, log_level, log_format, "warning")
    _serve(
        app,
        host="127.0.0.1",
        port=port,
        token=token,
        concurrency=concurrency,
        max_body=4 * 1024 * 1024,
        quiet=True,
        collector=mode,
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
    app, mode, level = _loaded(target, database, collector, log_level, log_format, "info")
    _serve(
        app,
        host=host,
        port=port,
        token=token,
        concurrency=concurrency,
        max_body=max_body,
        quiet=False,
        collector=mode,
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
    app, mode, _ = _loaded(target, database, collector, log_level, log_format, "info")
    tune_gc(mode)

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
