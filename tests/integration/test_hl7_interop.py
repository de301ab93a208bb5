"""HL7 over real loopback TCP against MLLP implementations nobody here wrote.

* gateway (HisClient, in a subprocess) -> python-hl7's asyncio MLLP server;
* python-hl7's asyncio MLLP client -> the gateway's MLLP server (subprocess);
* gateway (HisClient, in a subprocess) -> hl7apy's ``MLLPServer`` (threads).

The test process never runs the Twisted reactor. asyncio loops run here with
``asyncio.run`` and bounded ``wait_for`` timeouts; every server and process
is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import socketserver
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import pytest
from hl7apy.core import Message as HapyMessage
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message as hapy_parse

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7_sim import blood_count_message

from ._harness import GatewayProcess, wait_for_recording

HERE = Path(__file__).resolve().parent
HIS_SEND = [sys.executable, "-u", str(HERE / "_his_send.py")]
WHEN = datetime(2024, 5, 6, 7, 8, 9)
TIMEOUT = 30.0


def his_send(port: int, control_id: str) -> dict[str, Any]:
    """Run the HisClient helper against ``port``; return its JSON delivery report."""
    done = subprocess.run([*HIS_SEND, "--connect", f"127.0.0.1:{port}", "--control-id",
                           control_id], capture_output=True, text=True, timeout=TIMEOUT * 2,
                          check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.integration
def test_his_client_gets_aa_from_python_hl7_mllp_server() -> None:
    """The gateway's HisClient sends an ORU^R01 to python-hl7's server and matches its AA."""
    received: list[str] = []

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
                     ) -> None:
        try:
            while True:
                message = await reader.readmessage()
                received.append(str(message))
                writer.writemessage(message.create_ack(ack_code="AA", message_id="HIS-1"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed the connection
        finally:
            writer.close()

    async def scenario() -> dict[str, Any]:
        server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0, encoding="utf-8")
        try:
            port = server.sockets[0].getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                *HIS_SEND, "--connect", f"127.0.0.1:{port}", "--control-id", "GW-ORU-0001",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, err.decode()
            report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
            return report
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), TIMEOUT)

    report = asyncio.run(scenario())
    assert report["status"] == "delivered"
    assert (report["code"], report["acknowledges"]) == ("AA", "GW-ORU-0001")
    assert len(received) == 1
    parsed = hl7.parse(received[0])
    assert str(parsed.segment("MSH")[10]) == "GW-ORU-0001"
    assert len(parsed.segments("OBX")) == 2


@pytest.mark.integration
def test_python_hl7_client_gets_aa_from_the_gateway_and_rows_are_printed(
        tmp_path: Path) -> None:
    """python-hl7's MLLP client sends two ORU^R01; each gets AA with its ID; rows come out."""
    record_dir = tmp_path / "wire"
    messages = [blood_count_message(1, WHEN), blood_count_message(2, WHEN)]
    gateway = GatewayProcess(["--driver", "generic-hl7", "--tcp-listen", "127.0.0.1:0",
                              "--name", "hl7", "--record-dir", str(record_dir)])
    try:
        port = int(gateway.wait_for_status(r"hl7 listening on 127\.0\.0\.1:(\d+)").group(1))

        async def client() -> list[hl7.Message]:
            reader, writer = await asyncio.wait_for(
                hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8"), TIMEOUT)
            try:
                answers = []
                for raw in messages:
                    writer.writemessage(hl7.parse(raw.decode()))
                    await writer.drain()
                    answers.append(await asyncio.wait_for(reader.readmessage(), TIMEOUT))
                return answers
            finally:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), TIMEOUT)

        answers = asyncio.run(client())
        rows = gateway.rows(15 + 15)
        sent = b"".join(b"\x0b" + m + b"\x1c\r" for m in messages)
        assert wait_for_recording(record_dir, sent) == sent
    finally:
        status = gateway.stop()
    assert status == 0
    assert [(str(a.segment("MSA")[1]), str(a.segment("MSA")[2])) for a in answers] == [
        ("AA", "1"), ("AA", "2")]
    assert str(answers[0].segment("MSH")[9]) == "ACK^R01"  # v2.3.1: no structure component
    assert str(answers[0].segment("MSH")[5]) == "Mindray"
    assert {r["link"] for r in rows} == {"hl7"}
    first = [r for r in rows if r["sample_id"] == "B260001"]
    assert [r["test"] for r in first][:3] == ["6690-2", "751-8", "731-0"]
    wbc = first[0]
    assert (wbc["value"], wbc["unit"], wbc["reference_range"], wbc["flags"]) == (
        "10.64", "10*3/uL", "4.00-10.00", ["H"])
    assert {r["sample_id"] for r in rows} == {"B260001", "B260002"}
    ours = parse_message(messages[0])
    assert len([s for s in ours.segments if s.name == "OBX" and s[2] == "NM"]) == len(first)


#: MSH-10 of every message hl7apy's server handled (its handlers are built per request).
HAPY_RECEIVED: list[str] = []


class HapyOruHandler(AbstractHandler):
    """hl7apy handler answering every ORU^R01 with an AA built by hl7apy."""

    def reply(self) -> str:
        msg = hapy_parse(self.incoming_message, find_groups=False)
        HAPY_RECEIVED.append(msg.msh.msh_10.value)
        ack = HapyMessage("ACK", version=msg.version)
        ack.msh.msh_3 = "HIS"
        ack.msh.msh_5 = msg.msh.msh_3.value
        ack.msh.msh_9 = "ACK^R01^ACK"
        ack.msh.msh_10 = "HAPY-1"
        ack.msa.msa_1 = "AA"
        ack.msa.msa_2 = msg.msh.msh_10.value
        return "\x0b" + ack.to_er7() + "\x1c\r"


@pytest.mark.integration
def test_his_client_gets_aa_from_hl7apy_mllp_server() -> None:
    """The gateway's HisClient sends an ORU^R01 to hl7apy's MLLPServer and matches its AA."""
    HAPY_RECEIVED.clear()
    server = MLLPServer("127.0.0.1", 0, {"ORU^R01^ORU_R01": (HapyOruHandler,)}, timeout=10)
    assert isinstance(server, socketserver.ThreadingTCPServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        report = his_send(server.server_address[1], "GW-ORU-0002")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert report["status"] == "delivered"
    assert (report["code"], report["acknowledges"]) == ("AA", "GW-ORU-0002")
    assert HAPY_RECEIVED == ["GW-ORU-0002"]
