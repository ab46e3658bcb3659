"""tarry and DBOS side by side: one command per scenario, or all of them.

    .venv/bin/python bench/all.py                 # every scenario
    .venv/bin/python bench/all.py throughput      # one (or several) scenarios
    .venv/bin/python bench/all.py --list          # the scenarios and what they run
    .venv/bin/python bench/all.py --quick ...     # small sizes: a smoke test, not figures

Each scenario runs tarry's own script (bench/<script>.py, with this interpreter)
and then, where DBOS has the feature, bench/dbos_<scenario>.py with the DBOS venv's
interpreter (``--dbos-python``, default ``$DBOS_PYTHON`` or /tmp/dbosvenv/bin/python;
``python3 -m venv /tmp/dbosvenv && /tmp/dbosvenv/bin/pip install dbos``). Both run
with their default settings on the same workload in the same invocation; the DBOS
side prints its figures as JSON, which this driver parses. If the DBOS interpreter
is missing (or ``--no-dbos``) the DBOS side is skipped, with the reason printed.

Prints one table (figure, tarry, DBOS, ratio) and writes bench/results/all.json
(or ``--out``). ratio = how many times better tarry's figure is (tarry / DBOS for
rates, DBOS / tarry for times and memory): > 1 means tarry is ahead. Where the two
sides run at different sizes (DBOS is slower on several of these), the figure says
so. The per-script JSON files go to a temp dir, so bench/results/<script>.json (the
figures RESULTS.md cites) are not overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, print_table, write_json

BENCH = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PG = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_DBOS_PYTHON = os.environ.get("DBOS_PYTHON", "/tmp/dbosvenv/bin/python")


@dataclass
class Row:
    figure: str
    tarry: float | None
    dbos: float | None
    unit: str
    better: str  # "higher" or "lower" is better; "none": no ratio
    fmt: str = "{:,.2f}"

    def ratio(self) -> float | None:
        if self.better == "none" or not self.tarry or not self.dbos:
            return None
        return self.tarry / self.dbos if self.better == "higher" else self.dbos / self.tarry


@dataclass
class Scenario:
    name: str
    title: str
    tarry: Callable[[argparse.Namespace], list[str]]  # script + args
    tarry_json: str  # name of the JSON the tarry script writes
    dbos: Callable[[argparse.Namespace], list[str]] | None  # script + args, or None
    rows: Callable[[dict[str, Any], dict[str, Any] | None, argparse.Namespace], list[Row]]
    notes: list[str] = field(default_factory=list)


def num(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def q(args: argparse.Namespace, full: int, quick: int) -> str:
    return str(quick if args.quick else full)


# --- figures out of each side's JSON -------------------------------------------------


def throughput_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    tm = t["results"][0]["median"]
    dm = d["results"][0]["median"] if d else {}
    tn, dn = t["params"]["n"], (d["params"]["n"] if d else None)
    return [
        Row(f"end to end, runs/s (tarry {num(tn)}, DBOS {num(dn)} runs)",
            tm["end_to_end_rate"], dm.get("end_to_end_rate"), "runs/s", "higher", "{:,.0f}"),
        Row("start rate, runs/s (worker running)", tm["start_rate"], dm.get("start_rate"),
            "runs/s", "higher", "{:,.0f}"),
    ]  # fmt: skip


def pg_throughput_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    tt = t["throughput"]
    dm = d["median"] if d else {}
    dn = d["params"]["n"] if d else None
    return [
        Row(f"end to end, runs/s, 2 worker processes (tarry {num(tt['n'])}, DBOS {num(dn)} runs)",
            tt["runs_per_s"], dm.get("end_to_end_rate"), "runs/s", "higher", "{:,.0f}"),
        Row("start (enqueue) rate of the driver, runs/s", tt["start_rate"],
            dm.get("start_rate"), "runs/s", "higher", "{:,.0f}"),
    ]  # fmt: skip


def signal_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    tl = t["results"][0]["median"]["latency_ms"]
    ts = t["results"][0]["median"]["send_ms"]
    dl = d["latency_ms"] if d else {}
    ds = d["send_ms"] if d else {}
    tn, dn = t["params"]["n"], (d["params"]["n"] if d else "-")
    return [
        Row(f"send -> handler continues, p50 ms (tarry {tn}, DBOS {dn} round trips)",
            tl["p50"], dl.get("p50"), "ms", "lower"),
        Row("same, p99 ms", tl["p99"], dl.get("p99"), "ms", "lower"),
        Row("send call returning, p50 ms", ts["p50"], ds.get("p50"), "ms", "lower"),
    ]  # fmt: skip


def pg_signal_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    s = t["signal"]
    dl = d["latency_ms"] if d else {}
    ds = d["send_ms"] if d else {}
    dn = d["params"]["n"] if d else "-"
    return [
        Row(f"send (other process) -> handler continues, p50 ms (tarry {s['count']}, DBOS {dn})",
            s["p50_ms"], dl.get("p50"), "ms", "lower"),
        Row("same, p99 ms", s["p99_ms"], dl.get("p99"), "ms", "lower"),
        Row("send call returning, p50 ms", s["send_p50_ms"], ds.get("p50"), "ms", "lower"),
    ]  # fmt: skip


def parked_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    dn = d["n"] if d else None
    d = d or {}

    def per_run_kb(r: dict[str, Any]) -> float | None:
        return r["rss_growth_mb"] * 1024 / r["n"] if r else None

    return [
        Row("parked runs", t["n"], dn, "runs", "none", "{:,.0f}"),
        Row("RSS growth with all parked, MB", t["rss_growth_mb"], d.get("rss_growth_mb"), "MB",
            "lower", "{:,.1f}"),
        Row("RSS growth per parked run, KB", per_run_kb(t), per_run_kb(d), "KB", "lower",
            "{:,.3f}"),
        Row("threads with all parked", t["threads_after"], d.get("threads_after"), "", "lower",
            "{:,.0f}"),
        Row("threads with none parked", t["threads_before"], d.get("threads_before"), "",
            "lower", "{:,.0f}"),
        Row("asyncio tasks with all parked", t["tasks_after"], d.get("tasks_after"), "",
            "lower", "{:,.0f}"),
        Row("parking rate, runs/s", t["park_rate"], d.get("park_rate"), "runs/s", "higher",
            "{:,.0f}"),
    ]  # fmt: skip


def event_match_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    ts, tb = t["small"], t["big"]
    ds, db = (d["small"], d["big"]) if d else ({}, {})
    return [
        Row(f"parked (small / big): tarry {ts['n']:,} / {tb['n']:,}, "
            f"DBOS {num(ds.get('n'))} / {num(db.get('n'))}", None, None, "", "none"),
        Row("send call returning, p50 ms, small", ts["p50_ms"], ds.get("send_p50_ms"), "ms",
            "lower"),
        Row("send call returning, p50 ms, big", tb["p50_ms"], db.get("send_p50_ms"), "ms",
            "lower"),
        Row("DBOS: send -> parked run continues, p50 ms, small", None, ds.get("wake_p50_ms"),
            "ms", "lower", "{:,.1f}"),
        Row("DBOS: send -> parked run continues, p50 ms, big", None, db.get("wake_p50_ms"),
            "ms", "lower", "{:,.1f}"),
        Row("p50 big / p50 small (tarry: send_event; DBOS: send -> continues)", t["ratio"],
            d.get("ratio") if d else None, "", "lower"),
    ]  # fmt: skip


def timers_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    tb, tl = t["burst"], t["lone"]
    db, dl = (d["burst"], d["lone"]) if d else ({}, {})
    return [
        Row(f"same instant: last resumed after due, s (tarry {tb['n']:,}, "
            f"DBOS {num(db.get('n'))} timers)", tb["all_resumed_s"], db.get("all_resumed_s"),
            "s", "lower"),
        Row("same instant: lateness p50, ms", tb["p50_ms"], db.get("p50_ms"), "ms", "lower",
            "{:,.1f}"),
        Row("same instant: lateness p99, ms", tb["p99_ms"], db.get("p99_ms"), "ms", "lower",
            "{:,.1f}"),
        Row("lone 50 ms timer: lateness p50, ms", tl["p50_ms"], dl.get("p50_ms"), "ms", "lower"),
        Row("lone 50 ms timer: lateness p99, ms", tl["p99_ms"], dl.get("p99_ms"), "ms", "lower"),
    ]  # fmt: skip


def long_replay_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    d = d or {}

    def p50(k: str) -> float | None:
        return d[k]["p50_ms"] if k in d else None

    return [
        Row(f"tarry: signal -> line after the wait, replaying {t['steps']:,} steps; DBOS: "
            "forked run's first line -> line after recv (replay only), p50 ms",
            t["p50_ms"], p50("replay"), "ms", "lower", "{:,.1f}"),
        Row("DBOS: fork_workflow called -> line after recv (incl. queue dispatch), p50 ms",
            t["p50_ms"], p50("fork"), "ms", "lower", "{:,.1f}"),
        Row("DBOS: send -> line after recv, run still in memory (no replay), p50 ms",
            t["p50_ms"], p50("in_memory"), "ms", "lower", "{:,.1f}"),
    ]  # fmt: skip


def pg_wake_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    out = []
    for size in t["sizes"]:
        for stats in ("no_stats", "fresh_stats"):
            if stats in size:
                out.append(Row(f"PostgreSQL: wake one of {size['n']:,} parked (signal -> line "
                               f"after the wait), p50 ms, {stats.replace('_', ' ')}",
                               size[stats]["p50_ms"], None, "ms", "none"))  # fmt: skip
    return out


def pg_fanout_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    return [
        Row(f"PostgreSQL: send_event matching {t['n']:,} waiters, s", t["send_event_s"], None,
            "s", "none", "{:,.3f}"),
        Row("  then all of them resumed and ended, s", t["resumed_to_ended_s"], None, "s",
            "none", "{:,.3f}"),
    ]  # fmt: skip


def agent_loop_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    figures = t["figures"]
    marks = [
        k for k in ("turn_10_ms", "turn_100_ms", "turn_500_ms", "turn_1000_ms") if k in figures
    ]
    theirs = d["figures"] if d else {}
    better = "lower" if d else "none"
    rows = [Row(f"agent loop: send -> the turn's step, at {k[5:-3]}, ms", figures[k],
                theirs.get(k), "ms", better, "{:,.2f}") for k in marks]  # fmt: skip
    rows.append(Row("agent loop: sum of every resume, s", figures["resumes_total_s"],
                    theirs.get("resumes_total_s"), "s", better, "{:,.2f}"))  # fmt: skip
    return rows


def pg_park_rows(t: dict[str, Any], d: dict[str, Any] | None, a: Any) -> list[Row]:
    return [Row(f"PostgreSQL: parking {t['n']:,} runs on a signal, runs/s", t["park_rate"], None,
                "runs/s", "none", "{:,.0f}")]  # fmt: skip


SCENARIOS = [
    Scenario("throughput", "3-step workflow throughput, SQLite, 1 process",
             lambda a: ["throughput.py", "--runs", "1", "--n", q(a, "10000", "1000"),
                        "--variant", "async-steps", "--only", "concurrent"],
             "throughput",
             lambda a: ["dbos_throughput.py", "--runs", "1", "--n", q(a, "10000", "200"),
                        "--only", "concurrent"],
             throughput_rows,
             ["tarry: worker running while runs are started (gather in chunks of 1000); "
              "DBOS: start_workflow_async for all, then every result"]),
    Scenario("pg_throughput", "same on PostgreSQL, 2 worker processes",
             lambda a: ["postgres.py", "--only", "throughput", "--url", a.pg,
                        "--n", q(a, "10000", "1000")],
             "postgres",
             lambda a: ["dbos_throughput.py", "--runs", "1", "--database", a.pg,
                        "--processes", "2", "--n", q(a, "10000", "300")],
             pg_throughput_rows,
             ["tarry: app.start from the driver, 2 `tarry worker`-like processes; DBOS: "
              "DBOSClient.enqueue_async on a default Queue, 2 DBOS processes dequeue"]),
    Scenario("signal", "signal send -> handler continues, SQLite, in-process",
             lambda a: ["signal_latency.py", "--runs", "1", "--mode", "per-run",
                        "--n", q(a, "1000", "100")],
             "signal_latency",
             lambda a: ["dbos_signal.py", "--n", q(a, "50", "5")],
             signal_rows,
             ["DBOS: send_async / recv_async with a topic; on SQLite DBOS polls waiting recvs "
              "once a second (its default), so fewer round trips"]),
    Scenario("pg_signal", "same, PostgreSQL, sender in another process",
             lambda a: ["postgres.py", "--only", "signal", "--url", a.pg,
                        "--signals", q(a, "300", "30")],
             "postgres",
             lambda a: ["dbos_signal.py", "--database", a.pg, "--n", q(a, "300", "30")],
             pg_signal_rows,
             ["DBOS: DBOSClient.send_async from the driver process; LISTEN/NOTIFY"]),
    Scenario("parked", "parked runs: worker RSS, threads, parking rate",
             lambda a: ["parked.py", "--n", q(a, "100000", "2000")],
             "parked",
             lambda a: ["dbos_parked.py", "--n", q(a, "10000", "500")],
             parked_rows,
             ["DBOS at 10,000 (a parked DBOS workflow is a live task in the process that runs "
              "it; 100,000 at its parking rate would take ~15 min); tarry's figures are a "
              "separate worker process's, DBOS's the one process that starts and holds them"]),
    Scenario("event_match", "wake one run among many parked vs among 100",
             lambda a: ["event_match.py", "--big", q(a, "100000", "2000"),
                        "--samples", q(a, "200", "20")],
             "event_match",
             lambda a: ["dbos_parked.py", "--event-match", "--small", "100",
                        "--big", q(a, "10000", "500"), "--samples", q(a, "20", "3")],
             event_match_rows,
             ["tarry: send_event matched through the index (returns once the run is resumed "
              "in the store); DBOS has no event matching, a message goes to a workflow ID: "
              "send_async, and send -> the parked run continues"]),
    Scenario("pg_parked_wake", "PostgreSQL: wake one run among 100 / 100,000 parked",
             lambda a: ["pg_scale.py", "wake", "--url", a.pg, "--n", "100",
                        q(a, "100000", "2000"), "--samples", q(a, "100", "10"), "--analyze"],
             "pg_scale_wake", None, pg_wake_rows,
             ["parked runs copied in SQL from one parked by the worker; measured with the "
              "statistics autovacuum left (none where it is off), then after an ANALYZE"]),
    Scenario("pg_fanout", "PostgreSQL: one event matching 10,000 waiters",
             lambda a: ["pg_scale.py", "fanout", "--url", a.pg, "--n", q(a, "10000", "500")],
             "pg_scale_fanout", None, pg_fanout_rows,
             ["one worker process; waits filed under one (path, value)"]),
    Scenario("pg_park", "PostgreSQL: parking rate",
             lambda a: ["pg_scale.py", "park", "--url", a.pg, "--n", q(a, "20000", "1000")],
             "pg_scale_park", None, pg_park_rows,
             ["one worker process parks what the driver starts in chunks of 1,000"]),
    Scenario("timers", "sleeps due at the same instant; lone timer lateness",
             lambda a: ["timers.py", "--burst", q(a, "10000", "500"), "--lone", q(a, "200", "20")],
             "timers",
             lambda a: ["dbos_timers.py", "--burst", q(a, "10000", "300"),
                        "--lone", q(a, "200", "20")]
             + (["--lead", "15"] if a.quick else ["--lead", "140"]),
             timers_rows,
             ["DBOS: DBOS.sleep_async (durable: wake-up time recorded, then an in-memory "
              "asyncio sleep); tarry: step.sleep_until (a parked run; the timer is a row)"]),
    Scenario("agent_loop", "an agent loop: a message and a step per turn, 1,000 turns",
             lambda a: ["agent_loop.py", "--turns", q(a, 1000, 100)],
             "agent_loop_sqlite", None, agent_loop_rows,
             ["each turn a resume; flat when the run stays asleep in its worker; DBOS on "
              "SQLite polls a waiting recv once a second: see pg_agent_loop"]),
    Scenario("pg_agent_loop", "the agent loop on PostgreSQL, 1,000 turns",
             lambda a: ["agent_loop.py", "--postgres", a.pg, "--turns", q(a, 1000, 100)],
             "agent_loop_postgres",
             lambda a: ["dbos_agent_loop.py", "--database", a.pg, "--turns", q(a, 1000, 100)],
             agent_loop_rows,
             ["tarry: send_message -> the turn's step.run; DBOS: send_async -> the turn's "
              "step, recv_async woken by LISTEN/NOTIFY; both in one process, each message "
              "sent once the run waits for it"]),
    Scenario("long_replay", "resume a run with 1,000 completed steps",
             lambda a: ["long_replay.py", "--repeat", "5"],
             "long_replay",
             lambda a: ["dbos_long_replay.py", "--repeat", q(a, "5", "2")],
             long_replay_rows,
             ["DBOS replays only on re-execution (recovery or fork); a waiting run is resumed "
              "in memory. Replay measured with fork_workflow from after the completed recv"]),
]  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}


def run(cmd: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(BENCH)
    )
    return proc.returncode, proc.stdout, time.monotonic() - started  # fmt: skip


def last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise ValueError("no JSON line in the output")


def display(cmd: list[str]) -> str:
    exe = cmd[0]
    if exe == sys.executable:
        exe = ".venv/bin/python"
    return shlex.join([exe, *[os.path.relpath(c) if c.startswith(BENCH) else c for c in cmd[1:]]])


def run_scenario(s: Scenario, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    env = dict(os.environ, TARRY_BENCH_RESULTS_DIR=tmp)
    tcmd = s.tarry(args)
    tcmd = [sys.executable, os.path.join(BENCH, tcmd[0]), *tcmd[1:]]
    out: dict[str, Any] = {"scenario": s.name, "title": s.title, "notes": s.notes,
                           "tarry_command": display(tcmd)}  # fmt: skip
    rc, stdout, secs = run(tcmd, env)
    print(stdout, file=sys.stderr)
    path = os.path.join(tmp, f"{s.tarry_json}.json")
    if not os.path.exists(path):
        raise RuntimeError(f"{s.name}: tarry script exited {rc} without writing {path}")
    with open(path) as f:
        tarry = json.load(f)
    os.remove(path)
    out.update(tarry_exit=rc, tarry_seconds=secs, tarry=tarry)
    dbos: dict[str, Any] | None = None
    if s.dbos is None:
        out["dbos_skipped"] = "no DBOS equivalent"
    elif args.skip_dbos_reason:
        out["dbos_skipped"] = args.skip_dbos_reason
    else:
        dcmd = s.dbos(args)
        dcmd = [args.dbos_python, os.path.join(BENCH, dcmd[0]), *dcmd[1:], "--json"]
        out["dbos_command"] = display(dcmd)
        rc, stdout, secs = run(dcmd, env)
        try:
            dbos = last_json(stdout)
            out.update(dbos_exit=rc, dbos_seconds=secs, dbos=dbos)
        except ValueError:
            out["dbos_skipped"] = f"DBOS script exited {rc} without JSON"
    rows = s.rows(tarry, dbos, args)
    out["rows"] = [
        {"figure": r.figure, "tarry": r.tarry, "dbos": r.dbos, "unit": r.unit,
         "better": r.better, "ratio": r.ratio()}
        for r in rows
    ]  # fmt: skip
    print_rows(s, out, rows)
    return out


def fmt(row: Row, v: float | None) -> str:
    return "-" if v is None else row.fmt.format(v)


def print_rows(s: Scenario, out: dict[str, Any], rows: list[Row]) -> None:
    print(f"\n== {s.name}: {s.title}")
    table = []
    for r in rows:
        ratio = r.ratio()
        table.append([r.figure, fmt(r, r.tarry), fmt(r, r.dbos),
                      "-" if ratio is None else f"{ratio:,.2f}x"])  # fmt: skip
    print_table(["figure", "tarry", "DBOS", "tarry ahead by"], table)
    print(f"tarry: {out['tarry_command']}")
    if "dbos_command" in out:
        print(f"DBOS:  {out['dbos_command']}")
    if "dbos_skipped" in out:
        print(f"DBOS skipped: {out['dbos_skipped']}")
    for note in s.notes:
        print(f"note: {note}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(BY_NAME)} (default: all)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument("--dbos-python", default=DEFAULT_DBOS_PYTHON)
    parser.add_argument("--no-dbos", action="store_true", help="run tarry's side only")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--out", default=None, help="JSON name in bench/results (default all)")
    args = parser.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:13} {s.title}")
        return
    unknown = [n for n in args.scenarios if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(BY_NAME)}")
    chosen = [BY_NAME[n] for n in args.scenarios] or SCENARIOS
    args.skip_dbos_reason = None
    if args.no_dbos:
        args.skip_dbos_reason = "--no-dbos"
    elif not os.path.exists(args.dbos_python):
        args.skip_dbos_reason = (
            f"{args.dbos_python} not found (python3 -m venv /tmp/dbosvenv && "
            "/tmp/dbosvenv/bin/pip install dbos; or --dbos-python / $DBOS_PYTHON)"
        )
    else:
        check = subprocess.run([args.dbos_python, "-c", "import dbos"], capture_output=True)
        if check.returncode:
            args.skip_dbos_reason = f"{args.dbos_python} cannot import dbos"
    if args.skip_dbos_reason:
        print(f"DBOS will be skipped: {args.skip_dbos_reason}", flush=True)
    dbos_version = None
    if not args.skip_dbos_reason:
        dbos_version = subprocess.run(
            [args.dbos_python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="tarry-bench-all-") as tmp:
        for s in chosen:
            try:
                results.append(run_scenario(s, args, tmp))
            except Exception as exc:  # keep going: the other scenarios still run
                print(f"\n== {s.name}: FAILED: {exc!r}", flush=True)
                results.append({"scenario": s.name, "error": repr(exc)})
    name = args.out or ("all" if len(chosen) == len(SCENARIOS) else "all_" + "_".join(
        s.name for s in chosen))  # fmt: skip
    path = write_json(name, {"benchmark": "all", "quick": args.quick, "dbos_version": dbos_version,
                             "machine": machine_info(), "scenarios": results})  # fmt: skip
    print(f"\nwrote {path}")
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
