"""What a PostgreSQL benchmark costs the server: CPU of its processes, WAL, commits.

Runs a command (another benchmark) and reports, over its run, the CPU time of every
``postgres`` process on this machine (the server must run here; anything else the
server does meanwhile is counted too, so the figure is an upper bound), the WAL
written (``pg_current_wal_lsn``) and the commits (``pg_stat_database``). Divided by
the runs the benchmark drove, these are the per-run costs ``docs/scaling.md``
extrapolates from.

    .venv/bin/python bench/pg_cost.py .venv/bin/python bench/postgres.py --only throughput
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

URL = os.environ.get("TARRY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def server_cpu() -> float:
    """utime + stime (with reaped children) of the postgres processes, in seconds."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        if data[data.index("(") + 1 : data.rindex(")")].startswith("postgres"):
            fields = data.rsplit(")", 1)[1].split()
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def snapshot() -> tuple[float, float, int]:
    import psycopg

    with psycopg.connect(URL) as conn:
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        commits = conn.execute("SELECT sum(xact_commit) FROM pg_stat_database").fetchone()
    assert wal is not None and commits is not None
    return server_cpu(), float(wal[0]), int(commits[0])


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    before, t0 = snapshot(), time.monotonic()
    subprocess.run(sys.argv[1:], check=True)
    after, elapsed = snapshot(), time.monotonic() - t0
    print(
        f"server: {elapsed:.1f} s, CPU {after[0] - before[0]:.1f} s, "
        f"WAL {after[1] - before[1]:,.0f} bytes, commits {after[2] - before[2]:,}"
    )


if __name__ == "__main__":
    main()
