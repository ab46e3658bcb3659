"""Instructions per run, which the machine's load does not move: a 3-step async run's
cost counted by ``valgrind --tool=callgrind`` (every thread of the process).

    .venv/bin/python bench/instructions.py [--concurrency 128] [--top 0]
    .venv/bin/python bench/instructions.py --src /tmp/tarry-ab-<sha>/src   # another commit

``bench/thread_cpu.py``'s workload runs twice under callgrind, with 200 and with 1,200
runs; the difference divided by 1,000 leaves start-up out. Repeated on the same code it
moves by about 1 % (claim batches follow timing). ``--top N`` also prints the N
functions whose instructions per run are largest (``callgrind_annotate``'s self cost);
``--inclusive NAME`` (repeatable) the instructions per run spent inside each function
whose name contains NAME, callees included (``pysqlite_connection_execute``: every
statement, binding and stepping; ``gc_collect_main``: the cyclic garbage collector).
The total is split between the main thread (the event loop's) and the others (a
writer thread where a commit ran its statements there). Needs valgrind; each count
takes about half a minute.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$")


def _costs(path: str, inclusive: bool) -> dict[str, int]:
    shown_as = "yes" if inclusive else "no"
    command = ["callgrind_annotate", "--threshold=100", f"--inclusive={shown_as}", path]
    shown = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    costs: dict[str, int] = {}
    for line in shown.splitlines():
        m = _LINE.match(line)
        if m:
            name = m.group(2).split(" [")[0]
            if inclusive and "'" in name:
                continue  # a recursive entry of a function already counted
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def profile(src: str, n: int, concurrency: int, out: str, inclusive: bool) -> dict[str, int]:
    """Self costs by function over every thread, plus ``thread 1`` / ``threads 2+``
    totals and, with ``inclusive``, ``incl <name>`` for each function."""
    env = {**os.environ, "PYTHONPATH": src}
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
               f"--callgrind-out-file={out}", sys.executable,
               os.path.join(HERE, "thread_cpu.py"), "--n", str(n),
               "--concurrency", str(concurrency)]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True)
    costs: dict[str, int] = {}
    for index, part in enumerate(sorted(glob.glob(f"{out}-*"))):
        per = _costs(part, inclusive=False)
        total = per.get("PROGRAM TOTALS", 0)
        key = "thread 1" if index == 0 else "threads 2+"
        costs[key] = costs.get(key, 0) + total
        for name, cost in per.items():
            costs[name] = costs.get(name, 0) + cost
        if inclusive:
            for name, cost in _costs(part, inclusive=True).items():
                if name != "PROGRAM TOTALS":
                    costs[f"incl {name}"] = costs.get(f"incl {name}", 0) + cost
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", default=os.path.join(ROOT, "src"))
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--inclusive", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tarry-callgrind-") as tmp:
        few = profile(args.src, 200, args.concurrency, os.path.join(tmp, "few"),
                      bool(args.inclusive))  # fmt: skip
        many = profile(args.src, 1200, args.concurrency, os.path.join(tmp, "many"),
                       bool(args.inclusive))  # fmt: skip
    per = {k: (many.get(k, 0) - few.get(k, 0)) / 1000 for k in set(few) | set(many)}
    total = per.pop("PROGRAM TOTALS", 0.0)
    main_thread, others = per.pop("thread 1", 0.0), per.pop("threads 2+", 0.0)
    print(f"{args.src}: {total / 1000:,.0f}k instructions per run "
          f"(concurrency {args.concurrency}): main thread {main_thread / 1000:,.0f}k, "
          f"other threads {others / 1000:,.0f}k")  # fmt: skip
    for wanted in args.inclusive:
        found = {k: v for k, v in per.items() if k.startswith("incl ") and wanted in k}
        best = max(found.items(), key=lambda kv: kv[1], default=(f"incl {wanted}", 0.0))
        print(f"  {best[1] / 1000:8.1f}k  inside {best[0][5:][-80:]}")
    selfs = {k: v for k, v in per.items() if not k.startswith("incl ")}
    for name, cost in sorted(selfs.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {cost / 1000:8.1f}k  {name[-90:]}")


if __name__ == "__main__":
    main()
