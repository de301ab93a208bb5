"""Timing harness shared by bench/run.py and bench/pyastm_peer.py.

Both interpreters (the project's ``.venv`` and ``bench/.venv-peers``) import
this same file, so our code and python-astm are timed the same way:
``time.perf_counter``, the loop count calibrated once so that one repetition
lasts about ``target`` seconds, one untimed warm-up repetition, then ``reps``
timed repetitions. The garbage collector stays on (a live gateway runs with
it on); ``gc.collect()`` runs before each repetition so that no repetition
pays for garbage left by the previous case.

Standard library only: the peer interpreter has nothing else.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any


def calibrate(fn: Callable[[], object], target: float) -> int:
    """The loop count for which one repetition of ``fn`` lasts about ``target`` seconds."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target / 4 or number >= 1 << 24:
            return max(1, int(number * target / max(elapsed, 1e-9)))
        number *= 4


def measure(fn: Callable[[], object], *, reps: int = 7, target: float = 0.25) -> dict[str, Any]:
    """Time ``fn`` (one operation per call).

    Returns:
        ``number`` (calls per repetition), ``samples`` (seconds per call, one per
        repetition), and ``median``, ``min``, ``max`` of the samples.
    """
    number = calibrate(fn, target)
    gc.collect()
    for _ in range(number):  # warm-up repetition, not recorded
        fn()
    samples: list[float] = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return {
        "number": number,
        "samples": samples,
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }
