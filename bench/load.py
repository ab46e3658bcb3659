"""Sustained load: parked runs, concurrent clients, worker processes, every delivery checked.

The issue: "5,000 parked runs, 20 concurrent clients sending signals, events (20 %)
and messages for 60 s, 2 workers: throughput in the last 10 s within 20 % of the
first 10 s on both stores, every delivered signal observed exactly once."

Per store (a fresh SQLite file in a temp dir, or a fresh PostgreSQL schema dropped
afterwards):

1. The driver starts N runs of ``bench/_load_flow.py`` (run id = the payload's
   ``target``), then starts the worker processes (``tarry worker
   bench/_load_flow.py``) and waits until ``list_runs(status="waiting")`` holds all
   N. Each run loops on ``wait_for_any`` (its signal key ``sig:<run>``, the event
   ``load/poke`` matched on ``data.target``, a ``poke`` message, a ``stop``
   message) and records every wake in a ``seen`` step whose output names the
   delivery id.
2. C client coroutines in the driver (one App, async API) each pick a random run
   and a kind (20 % events, 40 % signals, 40 % messages) in a tight loop for S
   seconds; every delivery carries a unique id. A signal to a run that is not
   parked at that moment is buffered, a message queued, an event stored (the next
   wait takes it: ``lookback="run"``): each still counts as one delivery.
   Throughput = deliveries accepted per second (a per-second histogram); the first
   and last window (10 s) are compared: pass if last >= 0.8 x first. The workers'
   wake rate over the same windows comes from the ``seen`` steps' timestamps.
3. Drain: the clients stop; the driver waits until no run is ``queued`` or
   ``running`` (every backlog consumed), sends each run a ``stop`` message and
   waits until all N completed.
4. Check: every run's steps are read back with ``get_run``; each accepted delivery
   id must appear in exactly one ``seen`` step, of the run and kind it was sent
   to. Violations: doubled, lost, misrouted, phantom (observed, never sent), and
   stranded (still buffered / queued / unmatched in the store after a complete
   drain, although its run parked again since). They are printed and the exit
   status is 1; it is 1 too when the throughput ratio fails (not with ``--quick``).

    .venv/bin/python bench/load.py [--store sqlite|postgres|both] [--runs 5000]
        [--clients 20] [--seconds 60] [--workers 2] [--window 10] [--pg URL] [--json]
        [--concurrency 32] [--seed 1] [--drain-timeout 300]
    .venv/bin/python bench/load.py --quick      # 500 runs, 5 clients, 10 s, 3 s windows
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import machine_info, percentile, print_table, temp_sqlite_url, write_json
from _load_flow import EVENT, WORKFLOW, register, signal_key

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_load_flow.py")
EVENT_SHARE = 0.2  # the rest split evenly between signals and messages


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the store, read directly (what the API does not show: buffered signals, events) --


def pg_split(url: str) -> tuple[str, str]:
    """``(conninfo without schema=, schema)`` of a PostgreSQL URL."""
    base, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    schema = params.pop("schema", "tarry")
    rest = "&".join(f"{k}={v}" for k, v in params.items())
    return (f"{base}?{rest}" if rest else base), schema


def fresh_schema(url: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}schema=load_{uuid.uuid4().hex[:8]}"


def drop_schema(url: str) -> None:
    import psycopg

    base, schema = pg_split(url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only ``sql`` (no parameters) on the store's tables."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30.0)
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()
    import psycopg

    base, schema = pg_split(url)
    with psycopg.connect(base) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        return list(pg.execute(sql).fetchall())  # type: ignore[arg-type]


def pending_in_store(url: str) -> dict[str, tuple[str, str]]:
    """Deliveries the store still holds for a wait: buffered signals, unconsumed
    ``poke`` messages, and (every) stored ``load/poke`` event: uid -> (kind, run)."""
    pending: dict[str, tuple[str, str]] = {}
    for key, data in query(url, "SELECT key, data FROM signals"):
        uid = json.loads(bytes(data)).get("id")
        pending[str(uid)] = ("signal", str(key).removeprefix("sig:"))
    sql = "SELECT run_id, data FROM messages WHERE consumed_by IS NULL AND name = 'poke'"
    for run_id, data in query(url, sql):
        pending[str(json.loads(bytes(data)).get("id"))] = ("message", str(run_id))
    for (data,) in query(url, f"SELECT data FROM events WHERE name = '{EVENT}'"):
        event = json.loads(bytes(data))
        pending[str(event.get("id"))] = ("event", str(event.get("target")))
    return pending


# -- workers -----------------------------------------------------------------------------


def tarry_command() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "tarry")
    return beside if os.path.exists(beside) else (shutil.which("tarry") or "tarry")


class Workers:
    """``tarry worker bench/_load_flow.py`` processes, output to a log file each."""

    def __init__(self, url: str, count: int, concurrency: int, logdir: str) -> None:
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.logs = [os.path.join(logdir, f"worker-{i}.log") for i in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self) -> None:
        env = {**os.environ, "TARRY_DATABASE_URL": self.url, "PYTHONUNBUFFERED": "1"}
        cmd = [tarry_command(), "worker", FLOW, "--concurrency", str(self.concurrency)]
        for path in self.logs:
            with open(path, "wb") as out:
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=out))
        for proc, path in zip(self.procs, self.logs, strict=True):
            give_up = time.monotonic() + 60
            while "tarry: worker for" not in self._read(path):
                if proc.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"worker {proc.pid} did not start:\n{self._read(path)}")
                await asyncio.sleep(0.05)

    def alive(self) -> list[bool]:
        return [proc.poll() is None for proc in self.procs]

    def stop(self) -> list[int | None]:
        """SIGTERM (a clean stop hands runs back), then SIGKILL after 15 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(15))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes

    @staticmethod
    def _read(path: str) -> str:
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self) -> list[str]:
        """What the workers printed besides their start line: warnings, tracebacks."""
        lines = []
        for i, path in enumerate(self.logs):
            for line in self._read(path).splitlines():
                if line.strip() and not line.startswith("tarry: worker for"):
                    lines.append(f"worker {i}: {line}")
        return lines


# -- the clients -------------------------------------------------------------------------


class Clients:
    """C coroutines sending deliveries to random runs; what was accepted, when, how."""

    def __init__(self, app: tarry.App, run_ids: list[str], seconds: int, seed: int) -> None:
        self.app = app
        self.run_ids = run_ids
        self.seconds = seconds
        self.seed = seed
        self.sent: dict[str, tuple[str, str]] = {}  # uid -> (kind, run) accepted
        self.failed: dict[str, tuple[str, str]] = {}  # uid -> (kind, run): the call raised
        self.per_second = [0] * seconds
        self.latency: list[tuple[float, float]] = []  # (seconds into the load, ms)
        self.by_kind: dict[str, list[float]] = defaultdict(list)  # kind -> ms
        self.outcomes: Counter[str] = Counter()  # "kind/status"
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.misrouted: list[str] = []
        self.t0 = 0.0

    async def run(self, clients: int) -> None:
        self.t0 = time.perf_counter()
        deadline = self.t0 + self.seconds
        await asyncio.gather(*(self._client(n, deadline) for n in range(clients)))

    async def _client(self, n: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1_000_003 + n)
        app, i = self.app, 0
        while (began := time.perf_counter()) < deadline:
            run_id = rng.choice(self.run_ids)
            uid = f"c{n}-{i}"
            i += 1
            roll = rng.random()
            kind = "event" if roll < EVENT_SHARE else "signal" if roll < 0.6 else "message"
            try:
                if kind == "event":
                    sent = await app.send_event(EVENT, {"target": run_id, "id": uid})
                    status = "resumed" if sent.resumed else "stored"
                    if sent.resumed not in ([], [run_id]) or sent.started:
                        self.misrouted.append(f"event {uid} to {run_id}: {sent}")
                elif kind == "signal":
                    result = await app.send_signal(signal_key(run_id), {"id": uid})
                    status = result.status
                    if result.status == "delivered" and result.run_id != run_id:
                        self.misrouted.append(f"signal {uid} to {run_id}: {result}")
                else:
                    await app.send_message(run_id, "poke", {"id": uid})
                    status = "queued"
            except Exception as exc:
                self.failed[uid] = (kind, run_id)
                self.errors[f"{kind}: {type(exc).__name__}"] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{kind} {uid} to {run_id}: {exc!r}")
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            self.sent[uid] = (kind, run_id)
            self.outcomes[f"{kind}/{status}"] += 1
            self.per_second[min(int(done - self.t0), self.seconds - 1)] += 1
            self.latency.append((done - self.t0, (done - began) * 1000))
            self.by_kind[kind].append((done - began) * 1000)


# -- one store ---------------------------------------------------------------------------


async def count_runs(app: tarry.App, status: str) -> int:
    """Runs in ``status``, through the API (pages of 1,000)."""
    total, cursor = 0, None
    while True:
        page = await app.list_runs(status=status, limit=1000, cursor=cursor)
        total += len(page.items)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float, pause: float = 0.25
) -> float:
    """Seconds until ``check()`` held; TimeoutError naming ``what`` after ``timeout``."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f} s")
        await asyncio.sleep(pause)
    return time.perf_counter() - started


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def rate(per_second: list[int], first: bool, window: int) -> float:
    part = per_second[:window] if first else per_second[-window:]
    return sum(part) / max(1, len(part))


def window_latency(latency: list[tuple[float, float]], lo: float, hi: float) -> dict[str, float]:
    ms = [v for t, v in latency if lo <= t < hi]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def load_store(store: str, url: str, args: argparse.Namespace, logdir: str) -> dict[str, Any]:
    n, window, seconds = args.runs, args.window, args.seconds
    result: dict[str, Any] = {"store": store, "loadavg_before": list(os.getloadavg())}
    if store == "postgres":  # other work on the box may restart the server mid-run
        result["server_started"] = str(query(url, "SELECT pg_postmaster_start_time()")[0][0])
    run_ids = [f"load-{i:05d}" for i in range(n)]
    app = register(tarry.App(url))
    async with app:
        started = time.perf_counter()
        for part in chunks(run_ids, 500):
            await asyncio.gather(*(app.start(WORKFLOW, {"target": r}, run_id=r) for r in part))
        result["create_s"] = time.perf_counter() - started
        log(f"{store}: {n} runs created in {result['create_s']:.1f} s; starting workers")
        workers = Workers(url, args.workers, args.concurrency, logdir)
        try:
            await workers.start()

            async def all_waiting() -> bool:
                return await count_runs(app, "waiting") >= n

            result["park_s"] = await wait_until("all runs parked", all_waiting, 600, 0.5)
            log(f"{store}: {n} runs parked in {result['park_s']:.1f} s; load for {seconds} s")

            # -- the load ---------------------------------------------------------------
            clients = Clients(app, run_ids, seconds, args.seed)
            engine_t0 = app.clock.now()  # the time base of the steps' timestamps
            await clients.run(args.clients)
            load_s = time.perf_counter() - clients.t0
            engine_end = app.clock.now()
            log(f"{store}: load over: {len(clients.sent)} deliveries accepted; draining")

            # -- drain: every backlog consumed, then stop every run -----------------------
            drained = True
            busy = {"queued": -1, "running": -1}

            async def quiet() -> bool:
                for status in busy:
                    busy[status] = await count_runs(app, status)
                return not any(busy.values())

            try:
                result["drain_s"] = await wait_until("drain", quiet, args.drain_timeout)
            except TimeoutError:
                drained = False
                result["drain_s"] = None
                log(f"{store}: drain timed out with {busy}")
            result["statuses_after_drain"] = {
                s: await count_runs(app, s) for s in ("queued", "running", "waiting", "failed")
            }
            log(f"{store}: drained ({result['statuses_after_drain']}); stopping the runs")
            started = time.perf_counter()
            stop_errors: Counter[str] = Counter()
            for part in chunks(run_ids, 500):
                outcomes = await asyncio.gather(
                    *(app.send_message(r, "stop", {}) for r in part), return_exceptions=True
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        stop_errors[type(outcome).__name__] += 1

            async def all_ended() -> bool:
                live = [await count_runs(app, s) for s in ("waiting", "queued", "running")]
                return not any(live)

            try:
                await wait_until("all runs ended", all_ended, 300, 0.5)
                result["stop_s"] = time.perf_counter() - started  # sends included
            except TimeoutError:
                result["stop_s"] = None
                log(f"{store}: not every run ended after the stop message")
            result["stop_errors"] = dict(stop_errors)
        finally:
            result["worker_exit_codes"] = workers.stop()
            result["worker_log"] = workers.log_lines()
        log(f"{store}: workers stopped; reading {n} runs back")

        # -- read back and check --------------------------------------------------------
        started = time.perf_counter()
        runs: list[tarry.Run] = []
        for part in chunks(run_ids, 200):
            runs += await asyncio.gather(*(app.get_run(r) for r in part))
        result["read_s"] = time.perf_counter() - started
    pending = await asyncio.to_thread(pending_in_store, url)
    if store == "postgres":
        now_started = str(query(url, "SELECT pg_postmaster_start_time()")[0][0])
        result["server_restarted"] = now_started != result["server_started"]

    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)  # uid -> [(kind, run)]
    wake_times: list[float] = []
    by_worker: Counter[int] = Counter()
    run_problems: list[str] = []
    wakes_per_run: list[int] = []
    run_status: Counter[str] = Counter()
    for run in runs:
        run_status[run.status] += 1
        count = 0
        for step in run.steps:
            if step.id == "seen" or step.id.startswith("seen:"):
                if step.status != "completed":
                    run_problems.append(f"{run.id}: step {step.id} is {step.status}")
                    continue
                count += 1
                seen[step.output["id"]].append((step.output["kind"], run.id))
                by_worker[step.output["by"]] += 1
                if step.ended_at is not None:
                    wake_times.append(step.ended_at.timestamp() - engine_t0)
            elif step.status not in ("completed", "waiting"):
                run_problems.append(f"{run.id}: step {step.id} is {step.status}: {step.error}")
        wakes_per_run.append(count)
        if run.status != "completed":
            run_problems.append(f"{run.id}: {run.status} {run.error or ''}".rstrip())
        elif (run.output or {}).get("wakes") != count:
            run_problems.append(f"{run.id}: output {run.output} but {count} seen steps")

    violations: dict[str, list[str]] = {
        "doubled": [], "lost": [], "misrouted": list(clients.misrouted), "phantom": [],
        "stranded": [],
    }  # fmt: skip
    not_yet: list[str] = []  # pending when the drain did not finish: not a violation
    for uid, (kind, run_id) in clients.sent.items():
        got = seen.get(uid, [])
        if len(got) > 1:
            violations["doubled"].append(f"{kind} {uid} to {run_id} observed {len(got)}x: {got}")
        elif len(got) == 1:
            if got[0] != (kind, run_id):
                violations["misrouted"].append(f"{kind} {uid} to {run_id} observed as {got[0]}")
        elif uid in pending:
            line = f"{kind} {uid} to {run_id} still held by the store"
            (violations["stranded"] if drained else not_yet).append(line)
        else:
            violations["lost"].append(f"{kind} {uid} to {run_id}: never observed, not in store")
    unconfirmed = 0  # a call that raised but whose delivery was stored
    for uid, got in seen.items():
        if uid in clients.sent:
            continue
        if uid in clients.failed:
            unconfirmed += 1
            if len(got) > 1:
                violations["doubled"].append(f"{uid} (its send raised) observed {len(got)}x")
        else:
            violations["phantom"].append(f"{uid} observed {got}, never sent")

    # -- figures --------------------------------------------------------------------
    per_second = clients.per_second
    wakes = [0] * seconds
    after_load = 0
    for t in wake_times:
        if 0 <= t < seconds:
            wakes[int(t)] += 1
        elif t >= seconds:
            after_load += 1
    first, last = rate(per_second, True, window), rate(per_second, False, window)
    wake_first, wake_last = rate(wakes, True, window), rate(wakes, False, window)
    result.update(
        runs=n, clients=args.clients, seconds=seconds, workers=args.workers,
        concurrency=args.concurrency, window=window, load_s=load_s,
        engine_load_s=engine_end - engine_t0,
        accepted=len(clients.sent), accepted_per_s=len(clients.sent) / load_s,
        outcomes=dict(sorted(clients.outcomes.items())),
        send_errors=dict(clients.errors), send_error_samples=clients.error_samples,
        per_second=per_second, first_rate=first, last_rate=last,
        ratio=last / first if first else float("nan"),
        throughput_pass=bool(first) and last >= 0.8 * first,
        latency_first=window_latency(clients.latency, 0, window),
        latency_last=window_latency(clients.latency, seconds - window, seconds),
        latency_by_kind={
            kind: {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
            for kind, ms in sorted(clients.by_kind.items())
        },
        send_max_ms=max((ms for _, ms in clients.latency), default=0.0),
        slow_sends=[(round(t, 2), round(ms)) for t, ms in clients.latency if ms >= 1000],
        idle_seconds=sum(1 for c in per_second if c == 0),
        wakes_per_second=wakes, wake_first_rate=wake_first, wake_last_rate=wake_last,
        wakes_during_load=sum(wakes), wakes_after_load=after_load,
        backlog_at_load_end=len(clients.sent) - sum(wakes),
        wakes_by_worker={str(k): v for k, v in sorted(by_worker.items())},
        wakes_per_run_max=max(wakes_per_run, default=0),
        wakes_per_run_mean=sum(wakes_per_run) / max(1, len(wakes_per_run)),
        run_status=dict(run_status), run_problems=run_problems[:50],
        run_problem_count=len(run_problems), drained=drained,
        pending_at_end_not_drained=len(not_yet), unconfirmed_sends=unconfirmed,
        violations={k: len(v) for k, v in violations.items()},
        violation_samples={k: v[:50] for k, v in violations.items() if v},
        loadavg_after=list(os.getloadavg()),
    )  # fmt: skip
    return result


async def run_one(store: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tarry-load-") as logdir:
        if store == "sqlite":
            with temp_sqlite_url() as (url, _path):
                return await load_store(store, url, args, logdir)
        url = fresh_schema(args.pg)
        try:
            return await load_store(store, url, args, logdir)
        finally:
            with contextlib.suppress(Exception):
                drop_schema(url)


def report(r: dict[str, Any]) -> None:
    w = r["window"]
    v = r["violations"]
    print(f"\n{r['store']}: {r['runs']:,} runs, {r['clients']} clients, {r['seconds']} s, "
          f"{r['workers']} workers (load {r['loadavg_before'][0]:.2f} -> "
          f"{r['loadavg_after'][0]:.2f})")  # fmt: skip
    drain = "timed out" if r["drain_s"] is None else f"{r['drain_s']:.1f} s"
    lf, ll = r["latency_first"], r["latency_last"]
    print_table(
        ["figure", "value"],
        [
            ["runs created, parked", f"{r['create_s']:.1f} s, {r['park_s']:.1f} s"],
            ["deliveries accepted", f"{r['accepted']:,} ({r['accepted_per_s']:.0f}/s)"],
            [f"accepted/s, first {w} s", f"{r['first_rate']:.0f}"],
            [f"accepted/s, last {w} s", f"{r['last_rate']:.0f}"],
            ["last / first", f"{r['ratio']:.2f} ({'pass' if r['throughput_pass'] else 'FAIL'}: "
                             ">= 0.80)"],
            ["send p50/p99 ms, first", f"{lf['p50_ms']:.1f} / {lf['p99_ms']:.1f}"],
            ["send p50/p99 ms, last", f"{ll['p50_ms']:.1f} / {ll['p99_ms']:.1f}"],
            [f"wakes/s, first {w} s", f"{r['wake_first_rate']:.0f}"],
            [f"wakes/s, last {w} s", f"{r['wake_last_rate']:.0f}"],
            ["backlog at load end", f"{r['backlog_at_load_end']:,}"],
            ["send max, sends >= 1 s", f"{r['send_max_ms']:.0f} ms, {len(r['slow_sends'])}"],
            ["seconds with no send accepted", f"{r['idle_seconds']}"],
            ["drain, stop", f"{drain}, {r['stop_s'] or float('nan'):.1f} s"],
            ["wakes per run, mean / max",
             f"{r['wakes_per_run_mean']:.1f} / {r['wakes_per_run_max']}"],
            ["send errors", ", ".join(f"{k} {c}" for k, c in r["send_errors"].items()) or "0"],
            ["violations", ", ".join(f"{k} {c}" for k, c in v.items())],
        ],
    )  # fmt: skip
    print(
        "send p50/p99 ms by kind:",
        ", ".join(
            f"{k} {v['p50_ms']:.1f} / {v['p99_ms']:.1f}" for k, v in r["latency_by_kind"].items()
        ),
    )
    print("outcomes:", ", ".join(f"{k} {c:,}" for k, c in r["outcomes"].items()))
    print("accepted per second:", " ".join(map(str, r["per_second"])))
    print("wakes per second:   ", " ".join(map(str, r["wakes_per_second"])))
    if r.get("server_restarted"):
        print("note: the PostgreSQL server restarted during this run (other work on the box)")
    for kind, lines in r["violation_samples"].items():
        for line in lines[:20]:
            print(f"  {kind}: {line}")
    for line in r["run_problems"][:20]:
        print(f"  run: {line}")
    for line in r["send_error_samples"][:5]:
        print(f"  send error: {line}")
    for line in r["worker_log"][:20]:
        print(f"  {line}")
    if len(r["worker_log"]) > 20:
        print(f"  ... {len(r['worker_log']) - 20} more worker log lines")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=None, help="parked runs (5000)")
    parser.add_argument("--clients", type=int, default=None, help="client coroutines (20)")
    parser.add_argument("--seconds", type=int, default=None, help="load duration (60)")
    parser.add_argument("--window", type=int, default=None, help="first/last window, s (10)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="runs per worker at once")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg", default=os.environ.get("TARRY_BENCH_POSTGRES", DEFAULT_PG))
    parser.add_argument("--quick", action="store_true", help="500 runs, 5 clients, 10 s, 3 s")
    parser.add_argument(
        "--json", action="store_true", help="print the results as one JSON line (tables to stderr)"
    )
    args = parser.parse_args()
    sizes = (500, 5, 10, 3) if args.quick else (5000, 20, 60, 10)
    for name, default in zip(("runs", "clients", "seconds", "window"), sizes, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not 1 <= args.window <= args.seconds:
        parser.error("--window must be between 1 and --seconds")

    # SIGTERM as Ctrl-C: the finally blocks stop the workers and drop the schema.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = {}
    out = sys.stderr if args.json else sys.stdout
    for store in stores:
        try:
            results[store] = asyncio.run(run_one(store, args))
        except KeyboardInterrupt:
            print(f"interrupted during {store}: workers stopped, store removed", file=sys.stderr)
            return 130
        with contextlib.redirect_stdout(out):
            report(results[store])
    payload = {"benchmark": "load", "quick": args.quick, "params": vars(args),
               "stores": results, "machine": machine_info()}  # fmt: skip
    path = write_json("load", payload)
    failed = [s for s, r in results.items() if any(r["violations"].values())]
    slow = [s for s, r in results.items() if not r["throughput_pass"]]
    print(f"\nwrote {path}", file=out)
    if failed:
        print(f"VIOLATIONS on {', '.join(failed)}", file=out)
    if slow:
        print(f"throughput ratio below 0.80 on {', '.join(slow)}", file=out)
    if args.json:
        print(json.dumps(payload), flush=True)
    return 1 if failed or (slow and not args.quick) else 0


if __name__ == "__main__":
    sys.exit(main())
