"""kill -9 in the middle of transfers: nothing acknowledged is lost, nothing is stored twice.

The gateway (``lis-gateway run --config``) runs in a subprocess on an SQLite
database in ``tmp_path``. The analyzer is played here with the sans-IO
``LinkConnection`` in the instrument role; it records which messages got the
ACK of their last frame (``MessageSent``). In each round the gateway is killed
with SIGKILL after a random number of frames (and a random short delay, so
the kill also lands while a commit or an ACK is under way), restarted on the
same database, and everything not acknowledged is sent again together with
some messages that were (analyzers resend). At the end every message's
results must be in the store exactly once.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.astm.constants import STX
from lis_gateway.astm.events import MessageSent, SendFailed
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role
from lis_gateway.simulator import CHEMISTRY, HAEMATOLOGY, chemistry_message, haematology_message
from lis_gateway.store.engine import make_engine
from lis_gateway.store.repository import results_for_sample

#: What the instrument writes at the start of each frame.
FRAME = re.compile(re.escape(STX))
#: The L record, in the frame that completes a message.
LAST_FRAME = re.compile(rb"(?:\x02\d|\r)L\|")
WHEN = datetime(2024, 5, 6, 7, 8, 9)
MESSAGES = 16
ROUNDS = 5
STARTUP_TIMEOUT = 20.0
ROUND_TIMEOUT = 20.0


def _message(index: int) -> bytes:
    """Message ``index``: chemistry for even, multi-frame haematology for odd indexes."""
    build = chemistry_message if index % 2 == 0 else haematology_message
    return build(index + 1, WHEN)


def _sample(index: int) -> str:
    return f"C{240000 + index + 1}" if index % 2 == 0 else f"H{250000 + index + 1}"


def _tests(index: int) -> list[str]:
    return [c[0] for c in (CHEMISTRY if index % 2 == 0 else HAEMATOLOGY)]


class Gateway:
    """``lis-gateway run --config FILE`` in a subprocess, output to a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "lis_gateway", "--log-format", "json", "run",
             "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        self._start = log.stat().st_size

    def port(self, name: str = "chem1") -> int:
        """Wait for the "<name> listening" status line of this run; return the port."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[self._start:].decode("utf-8", "replace")
            match = re.search(name + r" listening on 127\.0\.0\.1:(\d+)", text)
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a file, not asserting on speed
        raise AssertionError("the gateway did not start:\n" + self.log.read_text("utf-8"))

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(timeout=15)
        self._out.close()
        return self.proc.returncode


def send_recording_acks(messages: list[bytes], sock: socket.socket,
                        after_frame: int | None = None,
                        on_frame: threading.Event | None = None,
                        marker: re.Pattern[bytes] = re.compile(STX)) -> set[int]:
    """Send ``messages`` in one session; return the indexes whose last frame was ACKed.

    Args:
        messages: E1394 texts, sent in order.
        sock: connected to the gateway.
        after_frame: set ``on_frame`` once this many frames have been written.
        on_frame: the event to set (the test kills the gateway then).
        marker: what is counted: :data:`FRAME` (every frame) or :data:`LAST_FRAME`
            (frames completing a message, whose ACK waits for the commit).

    Returns:
        Indexes (into ``messages``) acknowledged before the link ended, normally
        or because the gateway went away.
    """
    link = LinkConnection(LinkConfig(role=Role.INSTRUMENT, reply_timeout=3.0,
                                     busy_retry_delay=0.5))
    for message in messages:
        link.send(message, time.monotonic())
    acked: set[int] = set()
    frames = 0
    deadline = time.monotonic() + ROUND_TIMEOUT
    try:
        while time.monotonic() < deadline:
            for event in link.events():  # before writing: a write may find the peer gone
                if isinstance(event, SendFailed):
                    return acked
                if isinstance(event, MessageSent):
                    acked.add(len(acked))  # messages are acknowledged in order
            out = link.data_to_send()
            if out:
                sock.sendall(out)
                frames += len(marker.findall(out))
                if after_frame is not None and on_frame is not None and frames >= after_frame:
                    on_frame.set()
            if len(acked) == len(messages):
                sock.sendall(link.data_to_send())  # the closing EOT
                return acked
            timer = link.get_timer()
            now = time.monotonic()
            sock.settimeout(max(0.001, 0.2 if timer is None else min(0.2, timer - now)))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                data = None
            if data == b"":
                return acked  # the gateway went away
            now = time.monotonic()
            if data:
                link.receive_data(data, now)
            link.handle_timer(now)
    except (ConnectionResetError, BrokenPipeError):
        return acked
    raise AssertionError(f"the round did not end within {ROUND_TIMEOUT} s")


def _stored(url: str) -> dict[str, list[str]]:
    """The stored test codes per sample of every message, read through the store."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return {_sample(i): [r.test_code for r in results_for_sample(conn, _sample(i))]
                    for i in range(MESSAGES)}
    finally:
        engine.dispose()


def _round(config: Path, log: Path, indexes: list[int], rng: random.Random, *,
           kill: bool) -> set[int]:
    """One gateway run: send ``indexes``; with ``kill``, SIGKILL it mid-transfer."""
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        messages = [_message(i) for i in indexes]
        # Kill after any frame, or just after a frame that completes a message (the
        # gateway is then storing it, or has stored it and is about to ACK).
        marker = rng.choice([FRAME, LAST_FRAME])
        last = len(messages) if marker is LAST_FRAME else sum(m.count(b"\r") for m in messages)
        fire = threading.Event()
        killer = None
        if kill:
            delay = rng.choice([0.0, rng.uniform(0.0, 0.003), rng.uniform(0.0, 0.02)])

            def kill_later() -> None:
                if fire.wait(ROUND_TIMEOUT):
                    time.sleep(delay)  # randomises the kill point, asserts nothing
                    gateway.kill()

            killer = threading.Thread(target=kill_later, daemon=True)
            killer.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            acked_positions = send_recording_acks(
                messages, sock, after_frame=rng.randint(1, last) if kill else None,
                on_frame=fire, marker=marker)
        if killer is not None:
            fire.set()
            killer.join(timeout=ROUND_TIMEOUT)
            gateway.proc.wait(timeout=15)
            assert gateway.proc.returncode == -signal.SIGKILL
    finally:
        status = gateway.stop()
    if not kill:
        assert status == 0, log.read_text("utf-8")
    return {indexes[p] for p in acked_positions}


@pytest.mark.integration
def test_kill_9_mid_transfer_loses_nothing_acknowledged_and_stores_nothing_twice(
        tmp_path: Path) -> None:
    """Five SIGKILLs mid-transfer with resends: acknowledged results survive, none is doubled."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    config = tmp_path / "lis-gateway.toml"
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    config.write_text(f"""
[database]
url = "{url}"

[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    acked: set[int] = set()
    sent: set[int] = set()
    pending = list(range(MESSAGES))
    per_round = -(-MESSAGES // ROUNDS) + 1
    for _ in range(ROUNDS):
        fresh = [i for i in pending if i not in sent][:per_round]
        unacked_resends = [i for i in sent if i not in acked]
        acked_resends = rng.sample(sorted(acked), min(2, len(acked)))
        batch = sorted(set(unacked_resends + fresh + acked_resends))
        sent.update(batch)
        acked |= _round(config, log, batch, rng, kill=True)
        stored = _stored(url)  # the gateway is dead: nothing can be written meanwhile
        for i in range(MESSAGES):
            if i in acked:
                assert stored[_sample(i)] == _tests(i), f"seed {seed}: message {i} acknowledged"
            else:  # stored (committed, ACK lost in the kill) or not at all, never twice
                assert stored[_sample(i)] in ([], _tests(i)), f"seed {seed}: message {i}"
    final = sorted(set(range(MESSAGES)) - acked) + rng.sample(sorted(acked), min(3, len(acked)))
    got = _round(config, log, final, rng, kill=False)
    assert got == set(final), f"seed {seed}: the last round must be acknowledged completely"
    acked |= got
    assert acked == set(range(MESSAGES))

    out = subprocess.run([sys.executable, "-m", "lis_gateway", "results", "--config",
                          str(config), "--json"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    results = [json.loads(line) for line in out.splitlines()]
    by_sample: dict[str, list[str]] = {}
    for r in results:
        # no rules file is configured: every stored result is held for a person
        assert (r["analyzer"], r["state"]) == ("chem1", "held")
        assert "no rule set configured" in " ".join(r["reasons"])
        by_sample.setdefault(r["sample_id"], []).append(r["test"])
    expected = {_sample(i): _tests(i) for i in range(MESSAGES)}
    assert by_sample == expected, f"seed {seed}: stored results differ from those sent"
    assert len(results) == sum(len(t) for t in expected.values()), f"seed {seed}"
