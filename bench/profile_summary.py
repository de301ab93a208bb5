"""Summarize a py-spy ``--format raw`` profile (collapsed stacks) of the gateway.

    .venv/bin/python bench/profile_summary.py bench/results/profile-ingest-sqlite-10.txt

Prints the samples per thread, then the functions with the largest inclusive
share (every sample whose stack contains the function counts once), for our
code (``lis_gateway/``, ``drivers/``) and for everything, and the leaf
(self) time of the hottest functions. Idle samples (a thread waiting in
``epoll``, on a lock or in ``select``) are counted separately, so the shares
are of busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"(epoll|poll \(|select \(|_wait|wait \(threading|acquire|"
                  r"_threadworker.py:\d+\)$|Queue.get)")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def short(frame: str) -> str:
    """``func (path:line)`` -> ``func (module path without site-packages)``."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m["file"].split("site-packages/")[-1].split("/work/main/")[-1]
    return f"{m['func']} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    threads: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    busy = 0
    for line in args.profile.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = re.sub(r" \(\d+\)", "", frames[0]).removeprefix("thread ")
        threads[thread] += count
        if IDLE.search(frames[-1]) or (len(frames) > 1 and IDLE.search(frames[-2])
                                       and "sqlite" not in frames[-1]):
            idle[thread] += count
            continue
        busy += count
        seen = set()
        for frame in frames[1:]:
            name = short(frame)
            if name not in seen:
                seen.add(name)
                inclusive[name] += count
        leaf[short(frames[-1])] += count
    print(f"samples per thread (idle = waiting): busy total {busy}")
    for thread, n in threads.most_common():
        print(f"  {thread:40s} {n:7d}  idle {idle[thread]:7d}")
    print(f"\ninclusive share of busy samples, our code (lis_gateway/, drivers/), top {args.top}:")
    ours = [(n, f) for f, n in inclusive.items() if "lis_gateway/" in f or "drivers/" in f]
    for n, f in sorted(ours, reverse=True)[:args.top]:
        print(f"  {n / busy * 100:5.1f}%  {f}")
    print(f"\ninclusive share of busy samples, libraries, top {args.top}:")
    libs = [(n, f) for f, n in inclusive.items()
            if not ("lis_gateway/" in f or "drivers/" in f) and "threading.py" not in f
            and "twisted/_threads" not in f and "twisted/python/" not in f]
    for n, f in sorted(libs, reverse=True)[:args.top]:
        print(f"  {n / busy * 100:5.1f}%  {f}")
    print(f"\nself (leaf) share of busy samples, top {args.top}:")
    for f, n in leaf.most_common(args.top):
        print(f"  {n / busy * 100:5.1f}%  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
