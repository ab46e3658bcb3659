"""The chaos driver: worker processes killed at random while runs park and resume.

``run_chaos`` starts ``workers`` processes of ``worker.py`` on one store, starts
``runs`` runs of the ``chaos`` workflow spread over the first part of
``duration``, and sends each run its signal, event and message, each either at
once after the start (before the run can have reached that wait: the signal is
buffered, the event found by the default lookback, the message queued in the
mailbox) or only once the run is seen parked on that wait. Meanwhile a killer
SIGKILLs a random worker every ~``kill_every`` seconds and starts a new one, and
on PostgreSQL the server is restarted once. Then it checks the promise from the
store's own tables and the workers' ledgers (see ``worker.py``):

- every run completed, with the output its deliveries call for;
- no step function started after that step's result was stored (a step may run
  more than once only while in flight), and no run replayed after it ended;
- each signal, event and message reached its own run exactly once, and nothing
  is left behind: no waiter, no buffered signal, no unconsumed message, no lease.

Used by ``test_chaos.py`` (CI-sized) and ``bench/chaos.py`` (larger).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import tarry

WORKER = Path(__file__).with_name("worker.py")
STEPS = ("a", "b", "c", "d")
WAITS = ("sig", "ev", "msg")


@dataclass
class Config:
    url: str
    workdir: Path
    runs: int = 500
    duration: float = 60.0
    """Seconds of chaos: runs start over the first 60 %, kills go on to the end."""
    workers: int = 4
    kill_every: float = 0.5
    lease: str = "2s"
    restart_postgres: bool = True
    settle: float = 120.0
    """Seconds after ``duration`` for the last runs to finish, with no more kills."""
    step_ms: float = 20.0
    concurrency: int = 32
    seed: int | None = None
    progress: bool = False
    """Print a status line to stderr every few seconds."""


@dataclass
class Report:
    store: str
    runs: int = 0
    kills: int = 0
    restarts: int = 0
    crashes: int = 0
    startup_failures: int = 0
    signals: int = 0
    events: int = 0
    messages: int = 0
    early: collections.Counter[str] = field(default_factory=collections.Counter)
    signals_buffered: int = 0
    reruns_in_flight: int = 0
    fenced_writes: int = 0
    send_retries: int = 0
    send_errors: list[str] = field(default_factory=list)
    """Why client calls had to be made again (not violations: their outcome is unknown)."""
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"chaos: store={self.store} runs={self.runs} kills={self.kills} "
            f"restarts={self.restarts} signals={self.signals} events={self.events} "
            f"messages={self.messages} violations={len(self.violations)} "
            f"| early: signals={self.early['sig']} events={self.early['ev']} "
            f"messages={self.early['msg']} buffered={self.signals_buffered} "
            f"in_flight_reruns={self.reruns_in_flight} fenced_writes={self.fenced_writes} "
            f"worker_crashes={self.crashes} worker_startup_failures={self.startup_failures} "
            f"send_retries={self.send_retries} "
            f"seconds={self.seconds:.0f}"
        )

    def details(self, limit: int = 30) -> str:
        shown = "\n".join(self.violations[:limit])
        more = len(self.violations) - limit
        return shown + (f"\n... and {more} more" if more > 0 else "")


# -- the store's tables, read directly ---------------------------------------------------


def store_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:") else "postgres"


def pg_conninfo(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", ["public"])[0]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True))), schema


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (no parameters) read straight from the store's tables."""
    if store_kind(url) == "sqlite":
        conn = sqlite3.connect(url[len("sqlite:///") :], timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    conninfo, schema = pg_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        return pg.execute(sql).fetchall()  # type: ignore[arg-type]


def restart_postgres() -> None:
    versions = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


# -- worker processes ----------------------------------------------------------------------


class Fleet:
    """``size`` worker processes, each replaced when it is killed or dies."""

    def __init__(self, cfg: Config, ledger_dir: Path) -> None:
        self.cfg = cfg
        self.ledger_dir = ledger_dir
        self.slots: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []
        self.spawned = 0
        self.crashes: list[str] = []
        self.startup_failures = 0

    def _spawn(self) -> tuple[subprocess.Popen[bytes], IO[bytes], Path]:
        self.spawned += 1
        log = self.cfg.workdir / f"worker-{self.spawned}.log"
        out = log.open("wb")
        cmd = [
            sys.executable,
            str(WORKER),
            "--db",
            self.cfg.url,
            "--ledger-dir",
            str(self.ledger_dir),
            "--lease",
            self.cfg.lease,
            "--concurrency",
            str(self.cfg.concurrency),
            "--step-ms",
            str(self.cfg.step_ms),
        ]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        return proc, out, log

    def start(self) -> None:
        self.slots = [self._spawn() for _ in range(self.cfg.workers)]

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.slots))
        proc, out, _ = self.slots[i]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out.close()
        self.slots[i] = self._spawn()

    def replace_dead(self) -> None:
        """A worker that exited without being killed is replaced. One that had started
        is a crash; one that never started because the database was down at that
        moment (PostgreSQL restarting) only failed to start, as it should."""
        for i, (proc, out, log) in enumerate(self.slots):
            code = proc.poll()
            if code is None:
                continue
            out.close()
            tail = log.read_text(errors="replace")[-3000:]
            started = (self.ledger_dir / f"ready-{proc.pid}").exists()
            if not started and "cannot connect to PostgreSQL" in tail:
                self.startup_failures += 1
            else:
                self.crashes.append(f"worker pid {proc.pid} exited with {code}:\n{tail}")
            self.slots[i] = self._spawn()

    def stop(self) -> None:
        for proc, _, _ in self.slots:
            if proc.poll() is None:
                proc.terminate()
        give_up = time.monotonic() + 20
        for proc, out, log in self.slots:
            try:
                proc.wait(max(0.1, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.crashes.append(f"worker pid {proc.pid} did not stop on SIGTERM ({log})")
                proc.kill()
                proc.wait()
            out.close()


# -- the driver ----------------------------------------------------------------------------


@dataclass
class Plan:
    """One run: its key, what it is sent, and which sends go before the wait."""

    index: int
    key: str
    early: dict[str, bool]
    run_id: str = ""
    signal: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    event_id: str = ""
    sent: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)
    """Sends that raised and were sent again: a duplicate left behind is not a loss."""
    signal_result: tarry.SignalResult | None = None
    event_resumed: list[str] = field(default_factory=list)


class Driver:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.report = Report(store_kind(cfg.url), runs=cfg.runs)
        tag = uuid.uuid4().hex[:6]
        self.plans = [
            Plan(i, f"k{i}-{tag}", {w: self.rng.random() < 0.5 for w in WAITS})
            for i in range(cfg.runs)
        ]
        for p in self.plans:
            p.signal = {"key": p.key, "signal": uuid.uuid4().hex[:8]}
            p.event = {"key": p.key, "event": p.index}
            p.message = {"key": p.key, "message": p.index}
            p.event_id = f"ev-{p.key}"
            self.report.early.update(w for w, e in p.early.items() if e)
        self.by_run: dict[str, Plan] = {}
        self.began = time.monotonic()
        self.completed = 0
        self.sending_allowed = asyncio.Event()
        self.sending_allowed.set()
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.ledger_dir = cfg.workdir / "ledger"
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.fleet = Fleet(cfg, self.ledger_dir)
        self.app = tarry.App(cfg.url, lease=cfg.lease)

    # -- sending -------------------------------------------------------------------------

    async def _send(self, plan: Plan, what: str) -> None:
        if what in plan.sent:
            return
        plan.sent.add(what)
        attempt = 0
        while True:
            await self.sending_allowed.wait()
            self.in_flight += 1
            try:
                if what == "sig":
                    plan.signal_result = await self.app.send_signal(f"sig:{plan.key}", plan.signal)
                    self.report.signals += 1
                elif what == "ev":
                    result = await self.app.send_event("chaos/event", plan.event, id=plan.event_id)
                    plan.event_resumed = result.resumed
                    self.report.events += 1
                else:
                    await self.app.send_message(plan.run_id, "m", plan.message)
                    self.report.messages += 1
                return
            except Exception as exc:
                attempt += 1
                self.report.send_retries += 1
                self.report.send_errors.append(f"{what} for {plan.key}: {exc!r}")
                plan.uncertain.add(what)
                if attempt > 50:
                    self.report.violations.append(
                        f"run {plan.run_id}: could not send {what} after 50 attempts: {exc!r}"
                    )
                    return
                await asyncio.sleep(0.2)
            finally:
                self.in_flight -= 1

    def _spawn_send(self, plan: Plan, what: str) -> None:
        task = asyncio.create_task(self._send(plan, what))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _starter(self) -> None:
        window = self.cfg.duration * 0.6
        began = time.monotonic()
        for i, plan in enumerate(self.plans):
            due = began + window * i / len(self.plans)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.sending_allowed.wait()
            while True:
                try:
                    plan.run_id = await self.app.start("chaos", {"key": plan.key})
                    break
                except Exception as exc:
                    self.report.send_retries += 1  # start is idempotent only with a run_id
                    self.report.send_errors.append(f"start for {plan.key}: {exc!r}")
                    plan.run_id = ""
                    await asyncio.sleep(0.2)
            self.by_run[plan.run_id] = plan
            for what in WAITS:
                if plan.early[what]:
                    self._spawn_send(plan, what)

    async def _poller(self, done: asyncio.Event) -> None:
        """Send the late deliveries to runs seen parked on that wait; notice the end."""
        rounds = 0
        while not done.is_set():
            await asyncio.sleep(0.2)
            rounds += 1
            try:
                waiting = await self._list("waiting")
                count_ended = rounds % 5 == 0
                completed = await self._list("completed") if count_ended else []
            except Exception:
                continue
            for run in waiting:
                plan = self.by_run.get(run.id)
                if plan is None or run.waiting_for is None:
                    continue
                what = run.waiting_for.step
                if what in WAITS and not plan.early[what]:
                    self._spawn_send(plan, what)
            if count_ended:
                self.completed = len(completed)
                if self.cfg.progress:
                    print(
                        f"  t={time.monotonic() - self.began:.0f}s started={len(self.by_run)} "
                        f"waiting={len(waiting)} completed={len(completed)} "
                        f"kills={self.report.kills} restarts={self.report.restarts} "
                        f"sends_in_flight={self.in_flight}",
                        file=sys.stderr,
                    )
            if len(completed) == len(self.plans):
                done.set()

    async def _list(self, status: str) -> list[tarry.Run]:
        found: list[tarry.Run] = []
        cursor = None
        while True:
            page = await self.app.list_runs(
                status=status, workflow="chaos", limit=1000, cursor=cursor
            )
            found.extend(page.items)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def _killer(self, until: float, done: asyncio.Event) -> None:
        restart_at = None
        if self.cfg.restart_postgres and self.report.store == "postgres":
            restart_at = time.monotonic() + self.cfg.duration * 0.4
        while time.monotonic() < until and not done.is_set():
            await asyncio.sleep(self.rng.uniform(0.6, 1.4) * self.cfg.kill_every)
            await asyncio.to_thread(self.fleet.kill_one, self.rng)
            self.report.kills += 1
            self.fleet.replace_dead()
            if restart_at is not None and time.monotonic() >= restart_at:
                restart_at = None
                await self._restart_postgres()
        self.fleet.replace_dead()

    async def _restart_postgres(self) -> None:
        # The driver holds its own sends meanwhile: a send cut off inside COMMIT has
        # an unknown outcome (and a signal cannot be sent again without risking a
        # second one). Workers get no such courtesy.
        self.sending_allowed.clear()
        try:
            while self.in_flight:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(restart_postgres)
            self.report.restarts += 1
        finally:
            self.sending_allowed.set()

    async def run(self) -> Report:
        self.began = began = time.monotonic()
        self.fleet.start()
        done = asyncio.Event()
        try:
            await self.app._open()
            starter = asyncio.create_task(self._starter())
            poller = asyncio.create_task(self._poller(done))
            killer = asyncio.create_task(self._killer(began + self.cfg.duration, done))
            await starter
            await killer
            give_up = time.monotonic() + self.cfg.settle
            while not done.is_set() and time.monotonic() < give_up:
                self.fleet.replace_dead()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)
            done.set()
            await poller
            while self.tasks:
                await asyncio.gather(*list(self.tasks))
        finally:
            self.fleet.stop()
        self.report.seconds = time.monotonic() - began
        self.report.crashes = len(self.fleet.crashes)
        self.report.startup_failures = self.fleet.startup_failures
        await self.verify()
        await self.app.close()
        return self.report

    # -- verification --------------------------------------------------------------------

    async def verify(self) -> None:
        v = self.report.violations
        url = self.cfg.url
        v.extend(f"a worker crashed: {c}" for c in self.fleet.crashes)
        runs = {
            row[0]: row
            for row in query(
                url,
                "SELECT id, status, output, lease_token, due_at, ended_at, waiting_for "
                "FROM runs WHERE workflow = 'chaos'",
            )
        }
        steps: dict[str, dict[str, tuple[Any, ...]]] = collections.defaultdict(dict)
        for row in query(url, "SELECT run_id, key, kind, status, output, attempts FROM steps"):
            steps[row[0]][row[1]] = row
        ledger = read_ledger(self.ledger_dir)
        self.report.fenced_writes = sum(1 for w in ledger.writes if w[5] == "LeaseLost")
        for plan in self.plans:
            if not plan.run_id:
                v.append(f"run {plan.index} was never started")
                continue
            run = runs.get(plan.run_id)
            if run is None:
                v.append(f"run {plan.run_id}: missing from the runs table")
                continue
            self._verify_run(plan, run, steps[plan.run_id], ledger)
            await self._verify_mailbox(plan)
        waiters = query(url, "SELECT run_id, step_key, kind, key FROM waiters")
        v.extend(f"waiter left behind: {w}" for w in waiters)
        buffered = query(url, "SELECT key FROM signals")
        for (key,) in buffered:
            plan = next((p for p in self.plans if f"sig:{p.key}" == key), None)
            if plan is None or "sig" not in plan.uncertain:
                v.append(f"buffered signal left behind on {key!r}")

    def _verify_run(
        self,
        plan: Plan,
        run: tuple[Any, ...],
        steps: dict[str, tuple[Any, ...]],
        ledger: Ledger,
    ) -> None:
        v = self.report.violations
        rid = plan.run_id
        _, status, output, lease_token, due_at, ended_at, waiting_for = run
        if status != "completed":
            v.append(
                f"run {rid} ({plan.key}): {status}, not completed; early={plan.early} "
                f"sent={sorted(plan.sent)} signal={plan.signal_result} "
                f"event_resumed={plan.event_resumed} waiting_for="
                f"{None if waiting_for is None else bytes(waiting_for).decode()} "
                f"due_at={due_at} lease={lease_token} "
                f"steps={ {k: row[3] for k, row in steps.items()} }"
            )
            return
        if lease_token is not None or due_at is not None:
            v.append(f"run {rid}: ended with lease_token={lease_token!r} due_at={due_at!r}")
        out = json.loads(bytes(output))
        stored = {k: json.loads(bytes(row[4])) for k, row in steps.items() if row[4] is not None}
        expected_values = {
            "a": plan.key,
            "b": plan.signal,
            "c": plan.event,
            "d": ["m", plan.message],
        }
        want = {
            "key": plan.key,
            "signal": plan.signal,
            "event": {"id": plan.event_id, "data": plan.event},
            "message": {"name": "m", "data": plan.message},
        }
        got = {k: out.get(k) for k in want}
        if got != want:
            v.append(f"run {rid}: output {got} != expected {want}")
        for name in STEPS:
            step_out = out["steps"][name]
            if step_out.get("value") != expected_values[name]:
                v.append(f"run {rid}: step {name} saw {step_out.get('value')!r}")
            if stored.get(name) != step_out:
                v.append(
                    f"run {rid}: step {name} stored {stored.get(name)} but run used {step_out}"
                )
        if stored.get("sig") != plan.signal:
            v.append(f"run {rid}: signal step stored {stored.get('sig')}")
        if (stored.get("ev") or {}).get("id") != plan.event_id:
            v.append(f"run {rid}: event step stored {stored.get('ev')}")
        if (stored.get("msg") or {}).get("data") != plan.message:
            v.append(f"run {rid}: message step stored {stored.get('msg')}")
        result = plan.signal_result
        if result is not None:
            if result.status == "buffered":
                self.report.signals_buffered += 1
            elif result.run_id != rid:
                v.append(f"run {rid}: its signal was delivered to {result.run_id}")
        if any(r != rid for r in plan.event_resumed):
            v.append(f"run {rid}: its event resumed {plan.event_resumed}")
        self._verify_ledger(plan, stored, ledger, ended_at)

    def _verify_ledger(
        self, plan: Plan, stored: dict[str, Any], ledger: Ledger, ended_at: float
    ) -> None:
        v = self.report.violations
        rid = plan.run_id
        replays = sorted(ledger.replays.get(rid, []))  # (t, token, pid)
        for t, token, pid in replays:
            if t > ended_at * 1e9:
                v.append(f"run {rid}: replayed by pid {pid} (lease {token}) after it ended")
        for name in STEPS:
            runs = ledger.steps.get((rid, name), {})
            nonce = (stored.get(name) or {}).get("nonce")
            winner = runs.get(nonce)
            if winner is None or winner.end is None:
                v.append(f"run {rid}: step {name}'s stored result has no finished execution")
                continue
            for other in runs.values():
                if other is winner:
                    continue
                if other.start <= winner.end:
                    self.report.reruns_in_flight += 1
                    continue
                # Started after the stored result was produced: after it was stored,
                # unless that write then failed, which a stored result rules out.
                newer = [tok for t, tok, _ in replays if t < other.start]
                stale = bool(newer) and newer[-1] != other.token
                v.append(
                    f"run {rid}: step {name} ran again (pid {other.pid}, lease {other.token}"
                    f"{', a stale lease' if stale else ''}) "
                    f"{(other.start - winner.end) / 1e6:.1f} ms after pid {winner.pid}'s "
                    f"execution (lease {winner.token}) produced the stored result"
                )

    async def _verify_mailbox(self, plan: Plan) -> None:
        rows = await self.app._store.list_messages(plan.run_id)
        mine = [(m.name, json.loads(m.data), m.consumed_by) for m in rows]
        if mine == [("m", plan.message, "msg")]:
            return
        if "msg" in plan.uncertain and ("m", plan.message, "msg") in mine:
            return
        self.report.violations.append(f"run {plan.run_id}: mailbox {mine}")


# -- the ledger ------------------------------------------------------------------------------


@dataclass
class Execution:
    pid: int
    token: str
    start: int
    end: int | None = None


@dataclass
class Ledger:
    steps: dict[tuple[str, str], dict[str, Execution]]
    """(run, step) -> nonce -> execution."""
    replays: dict[str, list[tuple[int, str, int]]]
    writes: list[tuple[str, ...]]


def read_ledger(directory: Path) -> Ledger:
    steps: dict[tuple[str, str], dict[str, Execution]] = collections.defaultdict(dict)
    replays: dict[str, list[tuple[int, str, int]]] = collections.defaultdict(list)
    writes: list[tuple[str, ...]] = []
    for path in sorted(directory.glob("ledger-*.log")):
        for line in path.read_text().splitlines():
            f = line.split()
            if f[0] == "R":
                replays[f[1]].append((int(f[4]), f[3], int(f[2])))
            elif f[0] == "S":
                steps[(f[1], f[2])][f[5]] = Execution(int(f[3]), f[4], int(f[6]))
            elif f[0] == "E":
                steps[(f[1], f[2])][f[5]].end = int(f[6])
            elif f[0] == "W":
                writes.append(tuple(f[1:]))
    return Ledger(steps, replays, writes)


async def run_chaos(cfg: Config) -> Report:
    return await Driver(cfg).run()
