"""What the lifecycle log and tracing cost: throughput and signal latency with
info-level logs written to a file (JSON lines), with OpenTelemetry tracing on (the
SDK with a batch processor and an exporter that drops spans; all traces sampled,
and 1 % of them), and with none of these, interleaved.

    .venv/bin/python bench/observe_overhead.py [--rounds 5]

Each round runs ``throughput.py`` (5,000 runs of the 3-step workflow, started
while one worker runs, SQLite) and ``signal_latency.py`` (500 round trips, one run
each) once per mode, alternating which mode goes first (ABBA), each a fresh
process; ``TARRY_BENCH_LOG`` turns the logs on and ``TARRY_BENCH_TRACE`` the
tracing (see ``_common.py``). Prints each figure's median per mode and its ratio
to none (for latencies, none / mode): the target is at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("none", "info logs to a file", "traces", "traces 1%")


def _run(script: str, args: list[str], mode: str, tmp: str) -> dict[str, object]:
    env = {**os.environ, "TARRY_BENCH_RESULTS_DIR": tmp}
    env.pop("TARRY_BENCH_LOG", None)
    env.pop("TARRY_BENCH_TRACE", None)
    if mode == MODES[1]:
        env["TARRY_BENCH_LOG"] = os.path.join(tmp, "tarry.log")
    elif mode == MODES[2]:
        env["TARRY_BENCH_TRACE"] = "1"
    elif mode == MODES[3]:
        env["TARRY_BENCH_TRACE"] = "0.01"
    subprocess.run([sys.executable, os.path.join(HERE, script), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    name = os.path.splitext(script)[0]
    with open(os.path.join(tmp, f"{name}.json")) as f:
        result: dict[str, object] = json.load(f)
    return result


def _figures(mode: str, tmp: str) -> dict[str, float]:
    out: dict[str, float] = {}
    done = _run("throughput.py", ["--runs", "1", "--n", "5000", "--only", "concurrent",
                                  "--variant", "async-steps"], mode, tmp)  # fmt: skip
    rows = done["results"]
    assert isinstance(rows, list)
    out["throughput, runs/s"] = float(rows[0]["median"]["end_to_end_rate"])
    done = _run("signal_latency.py", ["--runs", "1", "--n", "500", "--mode", "per-run"], mode, tmp)
    rows = done["results"]
    assert isinstance(rows, list)
    out["signal p50, ms"] = float(rows[0]["median"]["latency_ms"]["p50"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="tarry-observe-") as tmp:
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]  # ABC CBA
            for mode in order:
                for name, value in _figures(mode, tmp).items():
                    samples[mode].setdefault(name, []).append(value)
                    print(f"round {round_ + 1} {mode:>20}  {name}: {value:,.2f}", flush=True)
        logged = os.path.getsize(os.path.join(tmp, "tarry.log"))
    print(f"\nmedian of {args.rounds} interleaved rounds ({logged:,} bytes of log written)")
    print(f"{'figure':<22}{'none':>10}" + "".join(f"{m[:10]:>10}{'ratio':>7}" for m in MODES[1:]))
    for name in samples["none"]:
        none = statistics.median(samples["none"][name])
        line = f"{name:<22}{none:>10,.2f}"
        for mode in MODES[1:]:
            value = statistics.median(samples[mode][name])
            ratio = value / none if "runs/s" in name else none / value
            line += f"{value:>10,.2f}{ratio:>7.2f}"
        print(line)


if __name__ == "__main__":
    main()
