"""One commit against another, interleaved on the same machine in one session.

    .venv/bin/python bench/ab.py --base 55a1d92                 # every scenario, 3 rounds
    .venv/bin/python bench/ab.py --base 55a1d92 --rounds 5 throughput signal
    .venv/bin/python bench/ab.py --base HEAD --rounds 8 agent_loop signal   # uncommitted work

The base commit is checked out once into a git worktree (``$TMPDIR/tarry-ab-<sha>``);
the other side is this working tree. Both sides run the *same* benchmark script
(this tree's ``bench/``) with ``PYTHONPATH`` pointing at their own ``src``, so only
tarry differs. Each round runs every scenario on both sides, alternating which
goes first (ABBA), so drift in the machine's load falls on both. Prints each
figure's median per side and the ratio new / base (for rates; base / new for
latencies): above 1 the new side is ahead, below 0.9 it has regressed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, print_table, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Figure:
    name: str
    higher_is_better: bool
    read: Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Scenario:
    script: str
    args: list[str]
    figures: list[Figure]


def _throughput(variant: str) -> Callable[[dict[str, Any]], float]:
    def read(result: dict[str, Any]) -> float:
        for row in result["results"]:
            if row["variant"] == variant:
                return float(row["median"]["end_to_end_rate"])
        raise KeyError(variant)

    return read


def _latency(stat: str) -> Callable[[dict[str, Any]], float]:
    def read(result: dict[str, Any]) -> float:
        return float(result["results"][0]["median"]["latency_ms"][stat])

    return read


def _first_step(stat: str) -> Callable[[dict[str, Any]], float]:
    def read(result: dict[str, Any]) -> float:
        return float(result["results"][0]["median"]["first_step_ms"][stat])

    return read


def _figure(name: str) -> Callable[[dict[str, Any]], float]:
    def read(result: dict[str, Any]) -> float:
        return float(result["figures"][name])

    return read


SCENARIOS = {
    "throughput": Scenario(
        "throughput.py",
        ["--runs", "1", "--n", "5000", "--only", "concurrent"],
        [
            Figure("SQLite async steps, runs/s", True, _throughput("async-steps")),
            Figure("SQLite sync steps, runs/s", True, _throughput("sync-steps")),
        ],
    ),
    # The same at the SQLite worker's default concurrency (128: bench/concurrency.py);
    # throughput.py's own default, 32, was the worker's default before.
    "throughput128": Scenario(
        "throughput.py",
        ["--runs", "1", "--n", "5000", "--only", "concurrent", "--concurrency", "128"],
        [
            Figure("SQLite async steps at 128, runs/s", True, _throughput("async-steps")),
            Figure("SQLite sync steps at 128, runs/s", True, _throughput("sync-steps")),
        ],
    ),
    # Well past the default: a claim's batch, and a heartbeat's, grows with it.
    "throughput512": Scenario(
        "throughput.py",
        ["--runs", "1", "--n", "5000", "--only", "concurrent", "--concurrency", "512"],
        [
            Figure("SQLite async steps at 512, runs/s", True, _throughput("async-steps")),
            Figure("SQLite sync steps at 512, runs/s", True, _throughput("sync-steps")),
        ],
    ),
    "signal": Scenario(
        "signal_latency.py",
        ["--runs", "1", "--n", "500", "--mode", "per-run"],
        [
            Figure("SQLite signal round trip p50, ms", False, _latency("p50")),
            Figure("SQLite signal round trip p99, ms", False, _latency("p99")),
        ],
    ),
    "start": Scenario(
        "start_latency.py",
        ["--runs", "1", "--n", "300"],
        [
            Figure("SQLite start to first step p50, ms", False, _first_step("p50")),
            Figure("SQLite start to result p50, ms", False, _latency("p50")),
        ],
    ),
    "agent_loop": Scenario(
        "agent_loop.py",
        ["--turns", "1000"],
        [
            Figure("SQLite agent loop, 1,000 resumes, s", False, _figure("resumes_total_s")),
            Figure("SQLite agent loop, turn 10 resume, ms", False, _figure("turn_10_ms")),
            Figure("SQLite agent loop, turn 1,000 resume, ms", False, _figure("turn_1000_ms")),
        ],
    ),
    "postgres": Scenario(
        "postgres.py",
        ["--n", "5000", "--signals", "300", "--url", PG],
        [
            Figure(
                "PostgreSQL 2 workers, runs/s", True, lambda r: float(r["throughput"]["runs_per_s"])
            ),
            Figure(
                "PostgreSQL cross-process signal p50, ms",
                False,
                lambda r: float(r["signal"]["p50_ms"]),
            ),
        ],
    ),
}


def worktree(base: str) -> str:
    sha = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = os.path.join(tempfile.gettempdir(), f"tarry-ab-{sha}")
    if not os.path.isdir(path):
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "--detach", path, sha],
            check=True,
            capture_output=True,
        )
    return path


def run_side(scenario: Scenario, src: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=src, TARRY_BENCH_RESULTS_DIR=out)
        subprocess.run(
            [sys.executable, os.path.join(HERE, scenario.script), *scenario.args],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=1800,
        )
        (name,) = os.listdir(out)
        with open(os.path.join(out, name)) as f:
            result: dict[str, Any] = json.load(f)
            return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    sides = {"base": os.path.join(worktree(args.base), "src"), "new": os.path.join(ROOT, "src")}
    samples: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for name in args.scenarios:
            scenario = SCENARIOS[name]
            order = ["base", "new"] if round_ % 2 == 0 else ["new", "base"]
            for side in order:
                result = run_side(scenario, sides[side])
                for figure in scenario.figures:
                    value = figure.read(result)
                    samples.setdefault((figure.name, side), []).append(value)
                    print(
                        f"round {round_ + 1} {side:4} {figure.name}: {value:,.2f}", file=sys.stderr
                    )
    rows = []
    summary = []
    for name in args.scenarios:
        for figure in SCENARIOS[name].figures:
            base = statistics.median(samples[figure.name, "base"])
            new = statistics.median(samples[figure.name, "new"])
            ratio = new / base if figure.higher_is_better else base / new
            rows.append([figure.name, f"{base:,.2f}", f"{new:,.2f}", f"{ratio:.2f}"])
            summary.append(
                {"figure": figure.name, "base": samples[figure.name, "base"],
                 "new": samples[figure.name, "new"], "ratio": ratio}
            )  # fmt: skip
    print(f"\nbase {args.base} vs this tree, median of {args.rounds} interleaved rounds")
    print_table(["figure", "base", "new", "new vs base (>1 better)"], rows)
    write_json("ab", {"benchmark": "ab", "base": args.base, "machine": machine_info(),
                      "figures": summary})  # fmt: skip


if __name__ == "__main__":
    main()
