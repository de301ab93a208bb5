"""Helpers for the integration tests: the gateway process and a blocking analyzer.

The gateway runs in a subprocess (the test process never starts the global
reactor). The analyzer is played here with the sans-IO ``LinkConnection`` in
the instrument role over a plain blocking socket or a pty master fd, with
``time.monotonic()`` as ``now``.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lis_gateway.astm.events import MessageSent, SendFailed
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role
from lis_gateway.wire import read_recording

#: The gateway's command line, before the ``receive`` options.
GATEWAY_COMMAND = [sys.executable, "-u", "-m", "lis_gateway", "--log-format", "json",
                   "--log-level", "debug", "receive"]

#: Bound every wait so a broken gateway fails the test instead of hanging it.
STARTUP_TIMEOUT = 20.0
EXCHANGE_TIMEOUT = 30.0
SAFETY_DURATION = "120"  # the gateway stops by itself even if the test dies


class GatewayProcess:
    """``lis-gateway receive`` in a subprocess, its output read line by line on two threads.

    Args:
        args: ``receive`` options (``--tcp-listen 127.0.0.1:0``, ``--serial DEV``...).
    """

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*GATEWAY_COMMAND, *args, "--duration", SAFETY_DURATION],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.stderr_seen: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [self._reader(self.proc.stdout, self.stdout),
                         self._reader(self.proc.stderr, self.stderr)]

    @staticmethod
    def _reader(stream: IO[str], lines: queue.Queue[str]) -> threading.Thread:
        def pump() -> None:
            for line in stream:
                lines.put(line)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def wait_for_status(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait for a standard-error line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stderr.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.stderr_seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no {pattern!r} from the gateway; stderr:\n"
                             + "".join(self.stderr_seen))

    def rows(self, count: int, timeout: float = EXCHANGE_TIMEOUT) -> list[dict[str, Any]]:
        """Read ``count`` JSON rows from standard output."""
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(rows) < count and time.monotonic() < deadline:
            try:
                rows.append(json.loads(self.stdout.get(timeout=0.1)))
            except queue.Empty:
                continue
        assert len(rows) == count, f"got {len(rows)} of {count} rows: {rows}"
        return rows

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not stop within 10 s; return the status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        while not self.stderr.empty():
            self.stderr_seen.append(self.stderr.get())
        if self.proc.returncode != 0:
            sys.stderr.write("gateway stderr:\n" + "".join(self.stderr_seen))
        return self.proc.returncode


def send_as_instrument(messages: list[bytes], write: Callable[[bytes], None],
                       read: Callable[[float], bytes],
                       timeout: float = EXCHANGE_TIMEOUT) -> bytes:
    """Send ``messages`` in the instrument role until all are acknowledged.

    Args:
        messages: E1394 texts.
        write: writes bytes to the gateway (blocking).
        read: returns what arrived within the given seconds (b"" if nothing).
        timeout: overall limit.

    Returns:
        Every byte written, in order.
    """
    link = LinkConnection(LinkConfig(role=Role.INSTRUMENT, reply_timeout=3.0,
                                     busy_retry_delay=0.5))
    for message in messages:
        link.send(message, time.monotonic())
    written = bytearray()
    acknowledged = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = link.data_to_send()
        if out:
            write(out)
            written += out
        for event in link.events():
            if isinstance(event, SendFailed):
                raise AssertionError(f"the gateway did not take the messages: {event.reason}")
            acknowledged += isinstance(event, MessageSent)
        if acknowledged == len(messages):
            tail = link.data_to_send()  # the EOT after the last ACK
            write(tail)
            return bytes(written + tail)
        timer = link.get_timer()
        now = time.monotonic()
        wait = 0.2 if timer is None else min(0.2, max(0.0, timer - now))
        data = read(wait)
        now = time.monotonic()
        if data:
            link.receive_data(data, now)
        link.handle_timer(now)
    raise AssertionError(f"messages not acknowledged within {timeout} s")


def socket_reader(sock: Any) -> Callable[[float], bytes]:
    """A ``read(wait)`` for :func:`send_as_instrument` over a blocking socket."""
    def read(wait: float) -> bytes:
        sock.settimeout(max(wait, 0.001))
        try:
            data: bytes = sock.recv(4096)
        except TimeoutError:
            return b""
        if not data:
            raise AssertionError("the gateway closed the connection")
        return data

    return read


def recorded_rx(record_dir: Path) -> bytes:
    """Every received byte in the wire recordings under ``record_dir``, file by file."""
    files = sorted(record_dir.glob("*.wire.jsonl"))
    assert files, f"no wire recording in {record_dir}"
    return b"".join(chunk.data for path in files
                    for chunk in read_recording(path.read_bytes()) if chunk.direction == "rx")


def wait_for_recording(record_dir: Path, expected: bytes,
                       timeout: float = EXCHANGE_TIMEOUT) -> bytes:
    """Wait until the recordings hold ``expected`` (the last EOT may still be in flight)."""
    deadline = time.monotonic() + timeout
    got = b""
    while time.monotonic() < deadline:
        if list(record_dir.glob("*.wire.jsonl")):
            got = recorded_rx(record_dir)
            if len(got) >= len(expected):
                break
        time.sleep(0.05)  # polling a file, not asserting on speed
    return got


def check_rows(rows: list[dict[str, Any]], link: str) -> None:
    """The rows of the simulator's chemistry (seq 1) and haematology (seq 2) messages."""
    assert {r["link"] for r in rows} == {link}
    chem = [r for r in rows if r["sample_id"] == "C240001"]
    heme = [r for r in rows if r["sample_id"] == "H250002"]
    assert [r["test"] for r in chem] == ["GLU", "CREA", "UREA", "ALT", "NA", "K"]
    assert [r["test"] for r in heme] == ["WBC", "RBC", "HGB", "HCT", "MCV", "PLT", "NEUT%",
                                         "LYMPH%"]
    glu = chem[0]
    assert (glu["value"], glu["unit"], glu["reference_range"]) == ("5.51", "mmol/L", "3.9-6.1")
    wbc = heme[0]
    assert (wbc["value"], wbc["unit"], wbc["flags"]) == ("7.06", "10^9/L", ["N"])
    assert chem[3]["flags"] == ["H"]
