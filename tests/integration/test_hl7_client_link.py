"""An HL7 analyzer that listens: the gateway connects out over MLLP and ACKs each message."""

from __future__ import annotations

import socket
from datetime import datetime

import pytest

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import BlockReceived, MllpFramer, frame
from lis_gateway.hl7_sim import blood_count_message

from ._harness import GatewayProcess

WHEN = datetime(2024, 5, 6, 7, 8, 9)
TIMEOUT = 30.0


def read_ack(conn: socket.socket) -> bytes:
    """The next MLLP block from the gateway (bounded wait)."""
    framer = MllpFramer()
    conn.settimeout(TIMEOUT)
    while True:
        data = conn.recv(4096)
        if not data:
            raise AssertionError("the gateway closed the connection")
        for event in framer.receive_data(data, 0.0):
            if isinstance(event, BlockReceived):
                return event.data


@pytest.mark.integration
def test_gateway_connects_out_to_an_hl7_analyzer_and_acknowledges() -> None:
    """With --tcp-connect and an HL7 driver the gateway dials the analyzer and answers AA."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        port = server.getsockname()[1]
        gateway = GatewayProcess(["--driver", "mindray-bc", "--tcp-connect",
                                  f"127.0.0.1:{port}", "--name", "bc"])
        try:
            conn, _ = server.accept()
            with conn:
                message = blood_count_message(1, WHEN)
                conn.sendall(frame(message))
                ack = parse_message(read_ack(conn))
                rows = gateway.rows(15)
        finally:
            status = gateway.stop()
    msa = ack.first("MSA")
    assert msa is not None and msa[1] == "AA"
    assert msa[2] == parse_message(message).control_id
    assert {r["link"] for r in rows} == {"bc"} and len(rows) == 15
    assert status == 0
