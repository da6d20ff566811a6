"""Summarise a py-spy "raw" (collapsed stacks) profile: top self time and top inclusive frames.

Profiles come from running a benchmark with BENCH_PROFILE_DIR=DIR (the harness attaches py-spy to
the `cumulo up` process around the measured section):

    BENCH_PROFILE_DIR=/tmp/prof .venv/bin/python benchmarks/list_detail.py
    .venv/bin/python benchmarks/profile_top.py /tmp/prof/list_detail.txt [--filter cumulo] [-n 25]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("-n", type=int, default=25)
    ap.add_argument("--filter", default="", help="only inclusive frames whose text contains this")
    args = ap.parse_args()

    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.path) as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            # Idle samples (the event loop waiting in select/epoll) are not work.
            if any("select (selectors.py" in f or "epoll" in f for f in frames[-2:]):
                continue
            total += count
            self_time[frames[-1]] += count
            for f in set(frames):
                inclusive[f] += count
    if not total:
        print("no busy samples")
        return
    print(f"{total} busy samples")
    print(f"\ntop {args.n} self time:")
    for frame, n in self_time.most_common(args.n):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print(f"\ntop {args.n} inclusive{' (' + args.filter + ')' if args.filter else ''}:")
    shown = 0
    for frame, n in inclusive.most_common():
        if args.filter and args.filter not in frame:
            continue
        print(f"  {100 * n / total:5.1f}%  {frame}")
        shown += 1
        if shown >= args.n:
            break


if __name__ == "__main__":
    main()
