"""End to end over a real pseudo-terminal: the gateway opens the slave as a serial device."""

from __future__ import annotations

import os
import select
import tty
from datetime import datetime
from pathlib import Path

import pytest

from lis_gateway.simulator import chemistry_message, haematology_message

from ._harness import GatewayProcess, check_rows, send_as_instrument, wait_for_recording

WHEN = datetime(2024, 5, 6, 7, 8, 9)


@pytest.mark.integration
def test_multi_frame_messages_over_a_pty(tmp_path: Path) -> None:
    """Two messages (one with ETB frames) written to a pty master reach a serial link."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation before the gateway configures it
    record_dir = tmp_path / "wire"
    gateway = GatewayProcess(["--serial", os.ttyname(slave), "--baud", "9600",
                              "--name", "pty", "--record-dir", str(record_dir)])
    try:
        gateway.wait_for_status(r"pty opened /dev/")

        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(master, view):]

        def read(wait: float) -> bytes:
            ready, _, _ = select.select([master], [], [], wait)
            return os.read(master, 4096) if ready else b""

        sent = send_as_instrument(
            [chemistry_message(1, WHEN), haematology_message(2, WHEN)], write, read)
        rows = gateway.rows(6 + 8)
        check_rows(rows, "pty")
        assert wait_for_recording(record_dir, sent) == sent
    finally:
        status = gateway.stop()
        os.close(master)
        os.close(slave)
    assert status == 0
