"""The chaos run at scale: the driver of ``tests/chaos`` with more runs and longer.

    .venv/bin/python bench/chaos.py --database sqlite:////tmp/chaos/tarry.db --runs 5000
    .venv/bin/python bench/chaos.py --database postgresql://postgres@127.0.0.1:5432/test \\
        --runs 5000 --seconds 300

Four worker processes, one SIGKILLed at random every ~0.5 s and replaced, the
PostgreSQL server restarted once mid-run; prints the counts line and every
violation, and exits 1 if there was one. A PostgreSQL URL without ``?schema=``
gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_driver():  # type: ignore[no-untyped-def]
    # Loaded by path: on sys.path, "chaos" would be this very file.
    spec = importlib.util.spec_from_file_location(
        "tarry_chaos_driver", ROOT / "tests" / "chaos" / "driver.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=None, help="default: a SQLite file in a temp dir")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=240.0, help="seconds of chaos")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.5)
    parser.add_argument("--lease", default="2s")
    parser.add_argument("--settle", type=float, default=300.0)
    parser.add_argument("--no-restart", action="store_true", help="keep PostgreSQL up")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="ledgers and worker logs (kept)")
    args = parser.parse_args()

    driver = load_driver()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tarry-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.database or f"sqlite:///{workdir}/tarry.db"
    schema = None
    if url.startswith("postgres") and "schema=" not in url:
        schema = f"chaos_{uuid.uuid4().hex[:8]}"
        url += ("&" if "?" in url else "?") + f"schema={schema}"
    cfg = driver.Config(
        url,
        workdir,
        runs=args.runs,
        duration=args.seconds,
        workers=args.workers,
        kill_every=args.kill_every,
        lease=args.lease,
        restart_postgres=not args.no_restart,
        settle=args.settle,
        seed=args.seed,
        progress=True,
    )
    print(f"workdir: {workdir}", file=sys.stderr)
    try:
        report = asyncio.run(driver.run_chaos(cfg))
    finally:
        if schema is not None:
            import psycopg

            base, _ = driver.pg_conninfo(url)
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    for error in report.send_errors[:20]:
        print(f"client call made again: {error}")
    if report.violations:
        print(report.details(limit=100))
    print(report.line())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
