"""Analyzers played by the bench: E1381 instrument-role senders over TCP and a pty.

The TCP senders are asyncio coroutines in the bench process, one connection
per analyzer, ``TCP_NODELAY`` set. Each sends its messages in lockstep as an
analyzer does: ENQ, wait for ACK; each frame, wait for ACK (a NAK resends the
frame, up to six tries); EOT; next message. Every reply is checked: anything
but ACK is counted and reported, never ignored. Latency is measured from the
``write`` of a frame to the arrival of its reply, with ``time.perf_counter``:
it includes the client's own event loop, which serves every link.

The serial sender writes to a pseudo-terminal master at 960 bytes per second
(9600 baud 8N1 has no limit on a pty, so the pacing is ours) and measures each
frame's turnaround: from its last byte written to the ACK read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from workload import ACK, ENQ, EOT, NAK, Message

REPLY_TIMEOUT = 15.0  # E1381's sender timer
MAX_TRIES = 6
BUSY_TRIES = 200  # ENQs answered busy (NAK) before a link gives up, 0.05 s apart


class LinkFailed(RuntimeError):
    """The gateway did not take a message (refused six times, closed, or silent)."""


@dataclass
class LinkStats:
    """What one analyzer connection saw."""

    enq: list[float] = field(default_factory=list)  # ENQ -> ACK
    frames: list[float] = field(default_factory=list)  # intermediate frame -> ACK
    finals: list[float] = field(default_factory=list)  # frame completing a message -> ACK
    eot_at: dict[str, float] = field(default_factory=dict)  # sample -> when EOT was written
    # when each of the above was written (same order), for latencies inside a time window
    enq_t0: list[float] = field(default_factory=list)
    frames_t0: list[float] = field(default_factory=list)
    finals_t0: list[float] = field(default_factory=list)
    keep: bool = True  # False (long soaks): counts and maxima only, no per-sample lists
    max_frame: float = 0.0
    max_final: float = 0.0
    max_enq: float = 0.0
    messages: int = 0
    results: int = 0
    naks: int = 0
    busy: int = 0
    started: float = 0.0
    ended: float = 0.0

    def note(self, kind: str, t0: float, dt: float) -> None:
        """One reply: ``kind`` is ``enq``, ``frames`` or ``finals``."""
        top = "max_" + {"enq": "enq", "frames": "frame", "finals": "final"}[kind]
        if dt > getattr(self, top):
            setattr(self, top, dt)
        if self.keep:
            getattr(self, kind).append(dt)
            getattr(self, kind + "_t0").append(t0)


async def _reply(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readexactly(1), REPLY_TIMEOUT)


async def send_messages(port: int, messages: Iterable[Message], start: asyncio.Event,
                        *, gap: float = 0.0, duration: float | None = None,
                        stats: LinkStats | None = None, period: float = 0.0,
                        offset: float = 0.0) -> LinkStats:
    """Connect, wait for ``start``, send ``messages``; ``gap`` seconds between them.

    ``duration``: start no new message after that many seconds. ``stats``: fill this
    one (another thread may read its counters while the link runs). ``period``:
    start message n at ``offset + n * period`` seconds after the start instead
    (a steady rate whatever each transfer takes; links given different offsets
    are spread over the period rather than sending in step).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stats = stats if stats is not None else LinkStats()
    clock = time.perf_counter
    try:
        await start.wait()
        stats.started = clock()
        for n, msg in enumerate(messages):
            if period:
                await asyncio.sleep(max(0.0, stats.started + offset + n * period - clock()))
            if duration is not None and clock() - stats.started >= duration:
                break
            for _ in range(BUSY_TRIES):  # busy (NAK to ENQ): wait and bid again (E1381)
                t0 = clock()
                writer.write(ENQ)
                answer = await _reply(reader)
                stats.note("enq", t0, clock() - t0)
                if answer == ACK:
                    break
                stats.busy += 1
                await asyncio.sleep(0.05)
            else:
                raise LinkFailed(f"ENQ refused {BUSY_TRIES} times on port {port}")
            last = len(msg.frames) - 1
            for k, frame in enumerate(msg.frames):
                for _ in range(MAX_TRIES):
                    t0 = clock()
                    writer.write(frame)
                    answer = await _reply(reader)
                    dt = clock() - t0
                    if answer == ACK:
                        break
                    if answer != NAK:
                        raise LinkFailed(f"unexpected reply {answer!r} to a frame")
                    stats.naks += 1
                else:
                    raise LinkFailed(f"frame refused {MAX_TRIES} times on port {port}")
                stats.note("finals" if k == last else "frames", t0, dt)
            writer.write(EOT)
            if stats.keep:
                stats.eot_at[msg.sample] = clock()
            stats.messages += 1
            stats.results += msg.results
            if gap:
                await asyncio.sleep(gap)
        stats.ended = clock()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return stats


async def run_links(ports: Sequence[int], plan: Sequence[Iterable[Message]], *,
                    gap: float = 0.0, duration: float | None = None,
                    stats: Sequence[LinkStats] | None = None,
                    period: float = 0.0) -> list[LinkStats]:
    """All links connect first, then start together; one ``LinkStats`` per link.

    ``duration`` and ``stats`` as for :func:`send_messages` (``stats``: one per link);
    with ``period``, link i starts its messages ``i * period / links`` into each period.
    """
    start = asyncio.Event()
    each = stats if stats is not None else [LinkStats() for _ in ports]
    tasks = [asyncio.ensure_future(send_messages(port, msgs, start, gap=gap,
                                                 duration=duration, stats=st, period=period,
                                                 offset=i * period / len(ports)))
             for i, (port, msgs, st) in enumerate(zip(ports, plan, each, strict=True))]
    await asyncio.sleep(0.3)  # every connection is accepted before the clock starts
    for task in tasks:
        if task.done():
            task.result()  # a failed connect raises here
    start.set()
    return list(await asyncio.gather(*tasks))


async def hold_idle(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections that send nothing (idle analyzer links)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        socks.append(sock)
    return socks


def closed_by_peer(socks: Sequence[socket.socket]) -> int:
    """How many of these connections the other end has closed (refused after accept)."""
    closed = 0
    for sock in socks:
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            continue  # open, nothing to read: an idle link
        except ConnectionError:
            closed += 1
    return closed


# ------------------------------------------------------------------ serial (pty)

@dataclass
class SerialStats:
    """One paced transfer over the pty."""

    bytes_out: int = 0
    bytes_in: int = 0
    frames: int = 0
    turnaround: list[float] = field(default_factory=list)  # last byte out -> reply read
    final_turnaround: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    naks: int = 0


class PacedLine:
    """Writes to a pty master no faster than ``rate`` bytes per second."""

    def __init__(self, fd: int, rate: float, chunk: int = 4) -> None:
        self.fd, self.rate, self.chunk = fd, rate, chunk
        self.t0 = 0.0
        self.sent = 0  # bytes written since t0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.sent = 0

    def idle(self, seconds: float) -> None:
        """Time the line spent not sending (waiting for a reply) shifts the schedule."""
        self.t0 += seconds

    def write(self, data: bytes) -> float:
        """Write ``data`` at the line rate; returns when its last byte is written."""
        view = memoryview(data)
        while view:
            part = view[:self.chunk]
            due = self.t0 + (self.sent + len(part)) / self.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            written = os.write(self.fd, part)
            self.sent += written
            view = view[written:]
        return time.perf_counter()


def read_reply(fd: int, timeout: float = REPLY_TIMEOUT) -> tuple[bytes, float]:
    """One reply byte from the pty master and when it was read."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise LinkFailed("no reply on the serial line")
    data = os.read(fd, 1)
    return data, time.perf_counter()


def send_serial(fd: int, messages: Sequence[Message], rate: float = 960.0) -> SerialStats:
    """Send ``messages`` over the pty at ``rate`` bytes/s; every reply must be ACK."""
    stats = SerialStats()
    line = PacedLine(fd, rate)
    started = time.perf_counter()
    line.start()
    for msg in messages:
        for _ in range(200):
            done = line.write(ENQ)
            stats.bytes_out += 1
            answer, at = read_reply(fd)
            stats.bytes_in += 1
            line.idle(at - done)
            if answer == ACK:
                break
            time.sleep(0.05)
        last = len(msg.frames) - 1
        for k, frame in enumerate(msg.frames):
            for _ in range(MAX_TRIES):
                done = line.write(frame)
                stats.bytes_out += len(frame)
                answer, at = read_reply(fd)
                stats.bytes_in += 1
                line.idle(at - done)
                if answer == ACK:
                    break
                stats.naks += 1
            else:
                raise LinkFailed("frame refused six times on the serial line")
            (stats.final_turnaround if k == last else stats.turnaround).append(at - done)
            stats.frames += 1
        line.write(EOT)
        stats.bytes_out += 1
    stats.elapsed = time.perf_counter() - started
    return stats
