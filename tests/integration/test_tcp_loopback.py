"""End to end over real loopback TCP: analyzer here, gateway in a subprocess."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.simulator import chemistry_message, haematology_message

from ._harness import (
    GatewayProcess,
    check_rows,
    send_as_instrument,
    socket_reader,
    wait_for_recording,
)

WHEN = datetime(2024, 5, 6, 7, 8, 9)


@pytest.mark.integration
def test_multi_frame_messages_over_loopback_tcp(tmp_path: Path) -> None:
    """Two messages (one with ETB frames) sent over TCP come out as JSON rows and a recording."""
    record_dir = tmp_path / "wire"
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--name", "bench",
                              "--record-dir", str(record_dir)])
    try:
        port = int(gateway.wait_for_status(r"bench listening on 127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sent = send_as_instrument([chemistry_message(1, WHEN), haematology_message(2, WHEN)],
                                      sock.sendall, socket_reader(sock))
            rows = gateway.rows(6 + 8)
            assert wait_for_recording(record_dir, sent) == sent
        check_rows(rows, "bench")
    finally:
        status = gateway.stop()
    assert status == 0
