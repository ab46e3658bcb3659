"""Summarize a py-spy raw (collapsed) profile: time per thread, self time per function,
and inclusive time of tarry's own functions.

    .venv/bin/py-spy record --threads -f raw -r 250 -o /tmp/p.txt -- \\
        .venv/bin/python bench/throughput.py --runs 1 --variant async-steps --only backlog
    .venv/bin/python bench/pyspy_summary.py /tmp/p.txt [--top 25] [--thread MainThread]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_THREAD = re.compile(r"thread \(\d+\)(?::\s*(?P<name>[^;]+))?")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+):\d+\)$")


def parse(path: str, lines: bool = False) -> list[tuple[str, list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            body, _, count = line.rpartition(" ")
            parts = body.split(";")
            m = _THREAD.match(parts[0])
            thread = (m.group("name") if m and m.group("name") else parts[0]).strip()
            frames = []
            for p in parts[1:]:
                fm = _FRAME.match(p)
                if lines or not fm:
                    frames.append(p)
                else:
                    frames.append(f"{fm.group('fn')} ({fm.group('file')})")
            stacks.append((thread, frames, int(count)))
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only this thread name (prefix)")
    parser.add_argument("--lines", action="store_true", help="self time per source line")
    args = parser.parse_args()
    stacks = parse(args.path, args.lines)
    per_thread: Counter[str] = Counter()
    for thread, _, n in stacks:
        per_thread[thread] += n
    total = sum(per_thread.values())
    print(f"{total} samples (non-idle)\n\nper thread:")
    for thread, n in per_thread.most_common():
        print(f"  {n / total:6.1%}  {thread}")
    if args.thread:
        stacks = [s for s in stacks if s[0].startswith(args.thread)]
    sel = sum(n for _, _, n in stacks)
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for _, frames, n in stacks:
        if frames:
            self_time[frames[-1]] += n
        for fr in set(frames):
            inclusive[fr] += n
    scope = args.thread or "all threads"
    print(f"\nself time, top {args.top} ({scope}, share of {sel} samples):")
    for fr, n in self_time.most_common(args.top):
        print(f"  {n / sel:6.1%}  {fr}")
    print(f"\ninclusive time of tarry functions ({scope}):")
    for fr, n in inclusive.most_common():
        if "(tarry/" in fr:
            print(f"  {n / sel:6.1%}  {fr}")


if __name__ == "__main__":
    main()
