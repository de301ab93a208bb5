"""Running ``lis-gateway simulate`` and ``replay`` in subprocesses, with bounded waits."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from typing import IO, Any

#: The simulator's command line, before its options.
SIMULATE = [sys.executable, "-u", "-m", "lis_gateway", "--log-level", "warning", "simulate"]
REPLAY = [sys.executable, "-u", "-m", "lis_gateway", "--log-level", "warning", "replay"]
#: Every wait is bounded so that a broken run fails instead of hanging.
TIMEOUT = 30.0


class Command:
    """A command in a subprocess whose standard error is read line by line.

    Args:
        argv: the command line.
    """

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self._err: queue.Queue[str] = queue.Queue()
        self._out: queue.Queue[str] = queue.Queue()
        self.err_seen: list[str] = []
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._threads = [self._pump(self.proc.stderr, self._err),
                         self._pump(self.proc.stdout, self._out)]

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str]) -> threading.Thread:
        def read() -> None:
            for line in stream:
                lines.put(line)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait for a standard-error line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._err.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.err_seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no {pattern!r}; stderr:\n" + "".join(self.err_seen))

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, list[dict[str, Any]], str]:
        """Wait for the end: exit status, JSON lines of standard output, standard error."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        while not self._err.empty():
            self.err_seen.append(self._err.get())
        out = []
        while not self._out.empty():
            out.append(self._out.get())
        err = "".join(self.err_seen)
        lines = [json.loads(line) for line in out if line.startswith("{")]
        return self.proc.returncode, lines, err


def simulate(args: list[str]) -> Command:
    """Start ``lis-gateway simulate ARGS --json``."""
    return Command([*SIMULATE, *args, "--json"])


def replay(args: list[str]) -> Command:
    """Start ``lis-gateway replay ARGS --json``."""
    return Command([*REPLAY, *args, "--json"])
