"""kill -9 the gateway again and again, during ingest and during delivery to the HIS.

The gateway (``lis-gateway run --config``) runs in a subprocess on SQLite in
``tmp_path`` and releases what its rules autoverify, without people
(``require_approval = false``, ``autoverified_skips_technician = true``,
``release_autoverified = true``), to an MLLP HIS written here on plain
sockets that keeps every message it receives and answers AA.

The analyzer is the sans-IO link in the instrument role. Like a real one it
keeps every message until the gateway has acknowledged its last frame and
sends what was not acknowledged again on the next connection (sometimes
also one that was). Each round starts the gateway on the same database and
SIGKILLs it at a random moment:

* *ingest* rounds: after a random number of frames written (any frame, or
  one that completes a message and waits for the commit), plus a random
  short delay;
* *delivery* rounds: the analyzer's messages are all acknowledged first;
  the kill comes when the HIS has received a random one of the round's
  messages, before or just after its AA (so the gateway may die before it
  records the answer).

After every kill, with the gateway dead: each message the analyzer saw
acknowledged is stored exactly once; the others at most once. At the end,
after a last round without a kill: every message is stored exactly once,
every result reached the HIS, each under one control ID (a duplicate at the
HIS is only ever the same control ID with the same content), and
``lis-gateway reconcile`` says every result is delivered.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.simulator import CHEMISTRY, chemistry_message
from lis_gateway.store import outbox
from lis_gateway.store.engine import make_engine
from tests.mllp_his import MllpHis

from ._resilience import (
    SocketLine,
    cli_json,
    control_id,
    sample_and_test,
    send_messages,
    stored_tests,
    wait_for,
    write_config,
)
from .test_crash import Gateway

WHEN = datetime(2024, 5, 6, 7, 8, 9)
ROUNDS = 22  # at least 20 kills: ingest and delivery alternate
MESSAGES = 30
TESTS = [c[0] for c in CHEMISTRY]
ROUND_TIMEOUT = 30.0


def _message(index: int) -> bytes:
    return chemistry_message(index + 1, WHEN)


def _sample(index: int) -> str:
    return f"C{240000 + index + 1}"


class Killer:
    """Kills the gateway once, when told (after an optional delay), from its own thread."""

    def __init__(self, gateway: Gateway, delay: float) -> None:
        self.fire = threading.Event()
        self._gateway, self._delay = gateway, delay
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.fire.wait(ROUND_TIMEOUT):
            time.sleep(self._delay)  # randomises the kill point, asserts nothing
            self._gateway.kill()

    def kill_now(self) -> None:
        """Fire (if nothing did) and wait until the process is dead."""
        self.fire.set()
        self._thread.join(ROUND_TIMEOUT)
        self._gateway.proc.wait(timeout=15)
        assert self._gateway.proc.returncode == -signal.SIGKILL


def _pending_entries(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return sum(e.state is not EntryState.DELIVERED for e in outbox.entries(conn))
    finally:
        engine.dispose()


@pytest.mark.integration
def test_kill_9_during_ingest_and_delivery_loses_nothing_and_doubles_nothing(
        tmp_path: Path) -> None:
    """22 SIGKILLs during ingest and delivery: every acknowledged message stored once,
    every result delivered to the HIS under one control ID, reconcile agrees."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    his = MllpHis(delay=0.02)
    config = write_config(tmp_path, url, his_port=his.port)
    log = tmp_path / "gateway.log"
    samples = [_sample(i) for i in range(MESSAGES)]
    acked: set[int] = set()
    unacked: list[int] = []  # sent, not acknowledged: the analyzer sends these again
    fresh = list(range(MESSAGES))
    kills = Counter[str]()
    for number in range(ROUNDS):
        new = fresh[:rng.randint(1, 2)]
        fresh = fresh[len(new):]
        batch = unacked + new
        if acked and rng.random() < 0.3:
            batch.append(rng.choice(sorted(acked)))  # a resend of an acknowledged one
        delivery = number % 2 == 1 or not batch
        gateway = Gateway(config, log)
        try:
            port = gateway.port()
            killer = Killer(gateway, rng.choice([0.0, rng.uniform(0, 0.003),
                                                 rng.uniform(0, 0.03)]))
            messages = [_message(i) for i in batch]
            on_frame = None
            if delivery:
                his_before = len(his.messages())
                target = his_before + rng.randint(1, 6)

                def kill_at_his(target: int = target) -> bool:
                    return len(his.messages()) >= target
            else:
                total = sum(len(m) // 240 + 1 for m in messages)
                after = rng.randint(1, total)

                def on_frame(frames: int, after: int = after,
                             fire: threading.Event = killer.fire) -> None:
                    if frames >= after:
                        fire.set()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                exchange = send_messages(SocketLine(sock), messages, timeout=ROUND_TIMEOUT,
                                         on_frame=on_frame)
            if delivery:
                deadline = time.monotonic() + 5  # nothing may be left to deliver
                while time.monotonic() < deadline and not kill_at_his():
                    time.sleep(0.002)  # waiting for the HIS's n-th message; asserts nothing
                kills["delivery" if kill_at_his() else "idle"] += 1
            else:
                kills["ingest"] += 1
            killer.kill_now()
        finally:
            gateway.stop()
        got = {batch[messages.index(m)] for m in exchange.acked}
        acked |= got
        unacked = [i for i in batch if i not in acked]
        stored = stored_tests(url, samples)  # the gateway is dead: nothing can change
        for i, sample in enumerate(samples):
            if i in acked:
                assert stored[sample] == TESTS, f"seed {seed}: message {i} was acknowledged"
            else:
                assert stored[sample] in ([], TESTS), f"seed {seed}: message {i}"
        if delivery:
            kills["with entries pending"] += _pending_entries(url) > 0

    # the last round: no kill; everything left is sent and delivered
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        last = unacked + fresh
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            exchange = send_messages(SocketLine(sock), [_message(i) for i in last],
                                     timeout=60)
        assert len(exchange.acked) == len(last), f"seed {seed}"
        acked |= set(last)
        expected = MESSAGES * len(TESTS)
        wait_for(lambda: len({control_id(m) for m in his.messages()}) >= expected,
                 f"delivery of {expected} results (seed {seed})")
        wait_for(lambda: _pending_entries(url) == 0, "the outbox recording every AA")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        his.close()

    assert acked == set(range(MESSAGES))
    assert stored_tests(url, samples) == {s: TESTS for s in samples}, f"seed {seed}"
    assert kills["ingest"] + kills["delivery"] + kills["idle"] == ROUNDS
    assert kills["delivery"] >= 5, f"seed {seed}: too few kills during delivery: {kills}"

    # the HIS: one control ID per result; the same control ID always the same content
    content: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for message in his.messages():
        content[control_id(message)].add(sample_and_test(message))
    assert all(len(c) == 1 for c in content.values()), f"seed {seed}"
    by_result = Counter(next(iter(c)) for c in content.values())
    assert len(by_result) == expected and set(by_result.values()) == {1}, f"seed {seed}"
    assert {s for s, _test in by_result} == set(samples)

    rows = cli_json(config, "reconcile")
    assert len(rows) == expected
    assert {(r["state"], r["destinations"][0]["where"]) for r in rows} == {
        ("released", "delivered")}
    assert {r["destinations"][0]["control_id"] for r in rows} == set(content), f"seed {seed}"
    resends = len(his.messages()) - len(content)
    print(f"seed {seed}: kills {dict(kills)}, {resends} same-control-ID resends at the HIS")
