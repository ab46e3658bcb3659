"""Bytecodes executed per run, by file and by function: where a run's Python goes.

    .venv/bin/python bench/bytecodes.py [--n 2000] [--top 40]
    PYTHONPATH=/tmp/tarry-ab-<sha>/src .venv/bin/python bench/bytecodes.py   # another commit

``bench/thread_cpu.py``'s workload (``workload``: 3-step async runs started while one
worker runs, concurrency 128, one SQLite file) with every Python frame traced opcode by opcode
(``sys.settrace`` with ``f_trace_opcodes``) on the event loop's thread, from the first
start to the last end; the counts divided by the runs. Repeated on the same code it
moves by about 0.1 % (claim batches follow timing), whatever the machine's load; it
counts only Python: what a call into C costs (sqlite3, orjson, asyncio's futures) is
``bench/instructions.py``'s to tell. Tracing makes the workload about 30 times slower.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import thread_cpu

COUNTS: collections.Counter[tuple[str, str]] = collections.Counter()


def _short(path: str) -> str:
    for marker in ("/src/", "/python3.11/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.path.basename(path)


def _each_opcode(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        code = frame.f_code
        COUNTS[(_short(code.co_filename), code.co_name)] += 1
    return _each_opcode


def _trace(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    frame.f_trace_lines = False
    return _each_opcode


@contextmanager
def _traced() -> Iterator[None]:
    sys.settrace(_trace)
    try:
        yield
    finally:
        sys.settrace(None)


def report(n: int, top: int) -> None:
    total = sum(COUNTS.values())
    print(f"{total / n:,.0f} bytecodes per run")
    by_file: collections.Counter[str] = collections.Counter()
    for (name, _), count in COUNTS.items():
        by_file[name] += count
    print("\nby file:")
    for name, count in by_file.most_common(top):
        print(f"  {count / n:8.1f}  {count / total:6.1%}  {name}")
    print("\nby function:")
    for (name, function), count in COUNTS.most_common(top):
        print(f"  {count / n:8.1f}  {count / total:6.1%}  {name}:{function}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(thread_cpu.workload(args.n, thread_cpu.inc_async, 128, _traced()))
    report(args.n, args.top)
