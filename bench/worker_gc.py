"""A ``tarry worker`` process's CPU and collector pauses, ``--gc tuned`` against ``python``.

    .venv/bin/python bench/worker_gc.py [--n 10000] [--rounds 3] [--concurrency 128]

Each round, for each mode in turn (ABAB): N runs of the 3-step async workflow are
queued on a fresh SQLite file with no worker, then ``tarry worker TARGET --gc MODE``
executes them. Measured in the worker process from its "tarry: worker" line: CPU per
run (``/proc/<pid>/stat``, user + system) and runs/s until the last run ended; and,
from a ``sitecustomize`` on the worker's path (this benchmark's only hook in it)
until the worker exits, the collector's passes by generation, their time per run and
the longest full pass. CPU and the passes' own time are steadier than wall time on a
shared machine: read the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import count_status, machine_info, three_step_app
from thread_cpu import inc_async

TICK = os.sysconf("SC_CLK_TCK")
MODES = ("python", "tuned")

# The worker's TARGET: the 3-step workflow of thread_cpu.py and throughput.py.
TARGET = """
import os
import sys

sys.path.insert(0, {bench!r})

from _common import three_step_app
from thread_cpu import inc_async

app = three_step_app(os.environ["TARRY_DATABASE_URL"], inc_async)
"""

# Loaded by the worker's interpreter at start-up: times each collector pass from
# SIGUSR1 on (sent once the worker is up, so the start-up's passes are left out) and
# writes the totals to $WORKER_GC_OUT when the worker exits (SIGTERM: a clean exit).
SITECUSTOMIZE = """
import atexit, gc, json, os, signal, time

_passes = {0: 0, 1: 0, 2: 0}
_seconds = {0: 0.0, 1: 0.0, 2: 0.0}
_longest = {0: 0.0, 1: 0.0, 2: 0.0}
_began = [0.0]
_counting = [False]


def _timed(phase, info):
    if not _counting[0]:
        return
    if phase == "start":
        _began[0] = time.perf_counter()
        return
    g = info["generation"]
    took = time.perf_counter() - _began[0]
    _passes[g] += 1
    _seconds[g] += took
    _longest[g] = max(_longest[g], took)


def _write():
    with open(os.environ["WORKER_GC_OUT"], "w") as f:
        json.dump({"passes": _passes, "seconds": _seconds, "longest": _longest}, f)


def _count(*_):
    _counting[0] = True


gc.callbacks.append(_timed)
signal.signal(signal.SIGUSR1, _count)
atexit.register(_write)
"""


def tarry_command() -> list[str]:
    script = Path(sys.executable).parent / "tarry"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tarry.cli"]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def queue_runs(url: str, n: int) -> None:
    async with three_step_app(url, inc_async) as app:
        for first in range(0, n, 1000):
            await asyncio.gather(*(app.start("three", {}) for _ in range(min(1000, n - first))))


def one(mode: str, n: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tarry-gc-") as tmp:
        target = Path(tmp, "target.py")
        target.write_text(TARGET.format(bench=os.path.dirname(os.path.abspath(__file__))))
        hook = Path(tmp, "hook")
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
        db = os.path.join(tmp, "tarry.db")
        url = f"sqlite:///{db}"
        asyncio.run(queue_runs(url, n))
        out = Path(tmp, "gc.json")
        path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "TARRY_DATABASE_URL": url, "WORKER_GC_OUT": str(out),
               "PYTHONPATH": path}  # fmt: skip
        proc = subprocess.Popen(
            [*tarry_command(), "worker", str(target), "--gc", mode,
             "--concurrency", str(concurrency), "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            while "tarry: worker" not in proc.stdout.readline():
                assert proc.poll() is None, "the worker exited before it ran"
            proc.send_signal(signal.SIGUSR1)
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            while count_status(db, "completed") < n:
                time.sleep(0.02)
            cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        gcs = json.loads(out.read_text())
    passes = {int(g): c for g, c in gcs["passes"].items()}
    return {
        "mode": mode,
        "runs_per_s": n / (t1 - t0),
        "cpu_us_per_run": (cpu1 - cpu0) / n * 1e6,
        "gc_us_per_run": sum(gcs["seconds"].values()) / n * 1e6,
        "passes": passes,
        "longest_full_ms": gcs["longest"]["2"] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            got = one(mode, args.n, args.concurrency)
            results[mode].append(got)
            print(json.dumps(got), file=sys.stderr)
    medians = {
        mode: {key: statistics.median(r[key] for r in rs)
               for key in ("runs_per_s", "cpu_us_per_run", "gc_us_per_run", "longest_full_ms")}
        for mode, rs in results.items()
    }  # fmt: skip
    print(f"{'--gc':8} {'runs/s':>8} {'CPU us/run':>11} {'GC us/run':>10} {'longest full':>13}")
    for mode, m in medians.items():
        print(f"{mode:8} {m['runs_per_s']:8,.0f} {m['cpu_us_per_run']:11.0f} "
              f"{m['gc_us_per_run']:10.1f} {m['longest_full_ms']:10.1f} ms")  # fmt: skip
    py, tuned = medians["python"], medians["tuned"]
    print(f"tuned / python: runs/s {tuned['runs_per_s'] / py['runs_per_s']:.2f}x, "
          f"CPU per run {tuned['cpu_us_per_run'] / py['cpu_us_per_run']:.2f}x")  # fmt: skip
    out = Path(__file__).with_name("results") / "worker_gc.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine_info(),
                               "medians": medians, "rounds": results}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
