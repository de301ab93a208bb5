"""Progress of long command-line operations, on standard error.

On a terminal the line ``label: 1200/5000 (24 %)`` is rewritten in place;
elsewhere (a pipe, journald) one line is written every ``every`` seconds, so
a log stays readable. Short runs (under ``min_total`` items) print nothing.
Counts only: never what is being processed (patient data stays out).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Report ``done`` out of ``total`` as work goes on (callable as ``progress(done, total)``).

    Args:
        label: what is being done ("reprocess", "audit verify").
        stream: where to write (standard error).
        clock: seconds, for the pacing (``time.monotonic``).
        every: seconds between lines when not on a terminal (0.2 s on one).
        min_total: totals below this print nothing.
    """

    def __init__(self, label: str, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every: float = 2.0,
                 min_total: int = 200) -> None:
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._every = 0.2 if self._tty else every
        self._min_total = min_total
        self._last: float | None = None
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        """Tell how far the work is (shown when it is time to)."""
        if total < self._min_total:
            return
        now = self._clock()
        if done < total and self._last is not None and now - self._last < self._every:
            return
        self._last = now
        text = f"{self.label}: {done}/{total} ({done * 100 // max(total, 1)} %)"
        if self._tty:
            self._stream.write("\r" + text + ("\n" if done >= total else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._shown = True
