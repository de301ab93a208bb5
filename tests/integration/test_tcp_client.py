"""Gateway as TCP client over real loopback: it connects out, and reconnects when dropped."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.simulator import chemistry_message, haematology_message

from ._harness import GatewayProcess, check_rows, send_as_instrument, socket_reader

WHEN = datetime(2024, 5, 6, 7, 8, 9)
ACCEPT_TIMEOUT = 30.0


def play(conn: socket.socket, message: bytes) -> bytes:
    """Send one message as the analyzer on an accepted connection."""
    return send_as_instrument([message], conn.sendall, socket_reader(conn))


@pytest.mark.integration
def test_gateway_connects_out_and_reconnects_after_the_analyzer_drops(tmp_path: Path) -> None:
    """The analyzer listens; the gateway connects, gets a message, is dropped, comes back."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(ACCEPT_TIMEOUT)
        port = server.getsockname()[1]
        gateway = GatewayProcess(["--tcp-connect", f"127.0.0.1:{port}", "--name", "out",
                                  "--record-dir", str(tmp_path / "wire")])
        try:
            first, _ = server.accept()
            with first:
                play(first, chemistry_message(1, WHEN))
                rows = gateway.rows(6)
            # the analyzer closed the connection (as Indiko does after each session)
            second, _ = server.accept()
            with second:
                play(second, haematology_message(2, WHEN))
                rows += gateway.rows(8)
        finally:
            status = gateway.stop()
    check_rows(rows, "out")
    assert status == 0
    assert len(list((tmp_path / "wire").glob("out-*.wire.jsonl"))) == 2  # one per connection
