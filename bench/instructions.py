"""Instructions per run, which the machine's load does not move: a 3-step async run's
cost counted by ``valgrind --tool=callgrind`` (every thread of the process).

    .venv/bin/python bench/instructions.py [--concurrency 128] [--top 0]
    .venv/bin/python bench/instructions.py --src /tmp/tarry-ab-<sha>/src   # another commit

``bench/thread_cpu.py``'s workload runs twice under callgrind, with 200 and with 1,200
runs; the difference divided by 1,000 leaves start-up out. Repeated on the same code it
moves by about 1 % (claim batches follow timing). ``--top N`` also prints the N
functions whose instructions per run are largest (``callgrind_annotate``'s self cost).
Needs valgrind; each count takes about half a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$")


def profile(src: str, n: int, concurrency: int, out: str) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": src}
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               os.path.join(HERE, "thread_cpu.py"), "--n", str(n),
               "--concurrency", str(concurrency)]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True)
    shown = subprocess.run(["callgrind_annotate", "--threshold=100", out], check=True,
                           capture_output=True, text=True).stdout  # fmt: skip
    costs: dict[str, int] = {}
    for line in shown.splitlines():
        m = _LINE.match(line)
        if m:
            name = m.group(2).split(" [")[0]
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", default=os.path.join(ROOT, "src"))
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tarry-callgrind-") as tmp:
        few = profile(args.src, 200, args.concurrency, os.path.join(tmp, "few"))
        many = profile(args.src, 1200, args.concurrency, os.path.join(tmp, "many"))
    per = {k: (many.get(k, 0) - few.get(k, 0)) / 1000 for k in set(few) | set(many)}
    total = per.pop("PROGRAM TOTALS", 0.0)
    print(f"{args.src}: {total / 1000:,.0f}k instructions per run "
          f"(concurrency {args.concurrency})")  # fmt: skip
    for name, cost in sorted(per.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {cost / 1000:8.1f}k  {name[-90:]}")


if __name__ == "__main__":
    main()
