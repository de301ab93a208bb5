"""The real gateway against an HIS that is not there, then silent, then back: every send
ends within the destination's ``ack_timeout``, so attempts grow with the back-off while
the HIS is away, and everything arrives once it answers, each sample in order.

Real parts: ``lis-gateway run --config`` in a subprocess on SQLite, the analyzer over
loopback TCP, :class:`tests.mllp_his.MllpHis` as the HIS (plain sockets).
"""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.simulator import CHEMISTRY, chemistry_message
from tests.mllp_his import MllpHis

from ._resilience import (
    SocketLine,
    control_id,
    free_port,
    in_sample_order,
    outbox_entries,
    send_messages,
    wait_for,
    write_config,
)
from .test_crash import Gateway

WHEN = datetime(2024, 5, 6, 7, 8, 9)
TESTS = len(CHEMISTRY)


@pytest.mark.integration
def test_an_his_not_listening_costs_attempts_and_delivery_resumes(tmp_path: Path) -> None:
    """No HIS on its port: the oldest entries are tried every ack_timeout (1 s) and
    recorded not-sent with the reason; when the HIS listens everything arrives."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    his_port = free_port()
    config = write_config(tmp_path, url, his_port=his_port, ack_timeout=1, retry_first=1,
                          retry_cap=2)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    his: MllpHis | None = None
    try:
        port = gateway.port()
        messages = [chemistry_message(n, WHEN) for n in range(1, 4)]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert send_messages(SocketLine(sock), messages, timeout=60).acked == messages
        wait_for(lambda: any(e.attempts >= 2 for e in outbox_entries(url)),
                 "a second attempt while the HIS is away")
        tried = [e for e in outbox_entries(url) if e.attempts]
        assert {(e.state, e.last_status, e.last_error) for e in tried} == {
            (EntryState.PENDING, "not-sent", "no connection to the HIS within 1 s")}
        assert len(outbox_entries(url)) == len(messages) * TESTS  # all queued meanwhile
        his = MllpHis(port=his_port)
        wait_for(lambda: {e.state for e in outbox_entries(url)} == {EntryState.DELIVERED},
                 "delivery once the HIS listens")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        if his is not None:
            his.close()
    assert his is not None
    received = his.messages()
    assert len({control_id(m) for m in received}) == len(messages) * TESTS
    assert in_sample_order(received, url)


@pytest.mark.integration
def test_a_silent_his_times_out_and_gets_the_message_again(tmp_path: Path) -> None:
    """The HIS reads the first two messages and says nothing: each is a timeout after
    1 s, the same message is sent again under the same control ID, then all go."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    his = MllpHis(["silence", "silence"])
    config = write_config(tmp_path, url, his_port=his.port, ack_timeout=1, retry_first=1,
                          retry_cap=2)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        message = chemistry_message(1, WHEN)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert send_messages(SocketLine(sock), [message], timeout=60).acked == [message]
        wait_for(lambda: len(outbox_entries(url)) == TESTS and {
            e.state for e in outbox_entries(url)} == {EntryState.DELIVERED}, "delivery")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        his.close()
    first, *rest = outbox_entries(url)
    assert (first.attempts, first.last_status) == (3, "delivered")
    assert {e.attempts for e in rest} == {1}
    received = [control_id(m) for m in his.messages()]
    assert received[:3] == [first.control_id] * 3
    assert received[3:] == [e.control_id for e in rest]
