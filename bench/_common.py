"""Shared helpers for the benchmarks: temp stores, medians, tables, JSON output."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# bench/all.py points this elsewhere so its per-script JSON does not overwrite the
# figures RESULTS.md cites.
RESULTS_DIR = os.environ.get("TARRY_BENCH_RESULTS_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results"
)


def _log_to_file_if_asked() -> None:
    """``TARRY_BENCH_LOG=<path>``: tarry's records at info, as JSON lines, to that file
    (bench/observe_overhead.py measures what logging costs)."""
    path = os.environ.get("TARRY_BENCH_LOG")
    if path:
        from tarry import logs

        logs.configure("info", "json", stream=open(path, "a"))  # noqa: SIM115 (the process's life)


_log_to_file_if_asked()


def _trace_if_asked() -> None:
    """``TARRY_BENCH_TRACE=<ratio>``: the OpenTelemetry SDK configured as an
    application would (a batch span processor; traces sampled at that ratio, 1 for
    all), with an exporter that drops what it is given (bench/observe_overhead.py
    measures what tracing costs)."""
    ratio = os.environ.get("TARRY_BENCH_TRACE")
    if not ratio:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(float(ratio))))
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)


_trace_if_asked()


def three_step_app(url: str, fn: Callable[[int], Any]) -> Any:
    """An App with the workflow ``three``: three steps of ``fn`` (sync or async), each
    on the last one's result."""
    import tarry

    app = tarry.App(database=url)

    @app.workflow("three")
    async def three(ctx: tarry.Context, step: tarry.Step) -> int:
        a = await step.run("a", fn, 1)
        b = await step.run("b", fn, a)
        return int(await step.run("c", fn, b))

    if os.environ.get("TARRY_BENCH_METRICS"):  # as tarry serve has it: metrics_overhead.py
        import tarry.metrics

        tarry.metrics.collector(app)
    return app


@contextmanager
def temp_sqlite_url() -> Iterator[tuple[str, str]]:
    """A fresh SQLite file in a temp dir: ``(url, path)``; the dir is removed after."""
    with tempfile.TemporaryDirectory(prefix="tarry-bench-") as tmp:
        path = os.path.join(tmp, "tarry.db")
        yield f"sqlite:///{path}", path  # absolute path -> sqlite:////tmp/...


def count_status(path: str, status: str) -> int:
    """Count runs in ``status`` through a separate read connection (WAL: never blocks)."""
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        return int(
            conn.execute("SELECT count(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
        )
    finally:
        conn.close()


class EndCounter:
    """Counts run ends in-process by wrapping the App's hook called after a run's final
    commit (``App._local.ended``; ``App._run_ended`` before 0.2, so that one script
    measures both sides of a change). Falls back to polling the database file when
    neither hook is there."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.ended = 0
        self.last_end: float | None = None
        self._target = 0
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.approximate = False
        owner = getattr(app, "_local", None)
        name = "ended"
        if owner is None or not hasattr(owner, name):
            owner, name = app, "_run_ended"
        self.hooked = hasattr(owner, name)
        if self.hooked:
            original: Callable[[str], None] = getattr(owner, name)

            def wrapped(run_id: str) -> None:
                original(run_id)
                self.ended += 1
                self.last_end = time.perf_counter()
                if self.ended >= self._target and self._event is not None and self._loop:
                    self._loop.call_soon_threadsafe(self._event.set)

            setattr(owner, name, wrapped)

    async def wait_for(self, target: int, *, timeout: float = 600.0) -> float:
        """Wait until ``target`` runs have ended; returns the perf_counter of the last end."""
        self._target = target
        if self.hooked:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            give_up = time.monotonic() + timeout
            while self.ended < target:
                try:
                    await asyncio.wait_for(self._event.wait(), 1.0)
                except TimeoutError:
                    # A run can end without the in-process hook firing (e.g. its task was
                    # cancelled right after the final commit): trust the database then.
                    if await asyncio.to_thread(count_status, self.path, "completed") >= target:
                        self.approximate = True
                        return time.perf_counter()
                    if time.monotonic() > give_up:
                        raise TimeoutError(f"only {self.ended}/{target} runs ended") from None
            assert self.last_end is not None
            return self.last_end
        give_up = time.monotonic() + timeout
        while True:
            done = await asyncio.to_thread(count_status, self.path, "completed")
            if done >= target:
                return time.perf_counter()
            if time.monotonic() > give_up:
                raise TimeoutError(f"only {done}/{target} runs completed")
            await asyncio.sleep(0.01)


AGENT_LOOP_MARKS = (10, 100, 500, 1000)
"""The turns the agent loop is reported at (agent_loop.py, dbos_agent_loop.py)."""


def agent_loop_figures(
    sent: dict[int, float], replied: dict[int, float], turns: int, wall: float
) -> dict[str, float]:
    """Each turn's send -> its step starting: the sum over every turn, and the median
    of the 5 turns around each mark."""
    figures = {"resumes_total_s": sum(replied[i] - sent[i] for i in range(turns)),
               "wall_s": wall}  # fmt: skip
    for mark in AGENT_LOOP_MARKS:
        if mark <= turns:
            window = [replied[i] - sent[i] for i in range(max(0, mark - 3), min(turns, mark + 2))]
            figures[f"turn_{mark}_ms"] = statistics.median(window) * 1000
    return figures


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_summaries(
    reps: list[dict[str, dict[str, float]]], figures: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per figure and statistic (``{"latency_ms": {"p50": ...}}``), the median over the
    repetitions' summaries."""
    return {
        what: {stat: median([r[what][stat] for r in reps]) for stat in reps[0][what]}
        for what in figures
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (Linux ``/proc``), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fsync_probe(samples: int = 300) -> dict[str, float]:
    """fsync latency of a 4 KiB append in the temp dir the benchmarks use (ms)."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tarry-fsync-") as tmp:
        fd = os.open(os.path.join(tmp, "probe"), os.O_WRONLY | os.O_CREAT)
        try:
            for _ in range(samples):
                os.write(fd, b"x" * 4096)
                t = time.perf_counter()
                os.fsync(fd)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99)]}


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    mem = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "tempdir": tempfile.gettempdir(),
        "loadavg_1m_5m_15m": list(os.getloadavg()),
        "fsync_4k": fsync_probe(),
        "git_head": commit,
        "argv": sys.argv,
    }


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: dict[str, Any]) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    return path
