"""The HIS played by the bench: an asyncio MLLP server that answers every ORU^R01 with AA.

Or, with ``silent`` set, a stalled HIS: it accepts and reads, and answers nothing.

For each message it notes MSH-10 (the control ID), OBR-3 (the filler order
number, which the gateway fills with the sample's accession) and OBX-3 (the
test), and the ``time.perf_counter`` at which its ACK was written, so the
bench can pair an analyzer's EOT with the HIS's ACK of each result.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


@dataclass
class Delivery:
    """One ORU^R01 the HIS acknowledged."""

    control_id: str
    sample: str
    test: str
    acked_at: float


@dataclass
class His:
    """The MLLP server; ``deliveries`` grows as ORUs arrive."""

    deliveries: list[Delivery] = field(default_factory=list)
    malformed: int = 0
    port: int = 0
    #: True: a stalled HIS; it keeps accepting and reading but answers nothing
    silent: bool = False
    unanswered: int = 0  # messages read while silent
    _server: asyncio.AbstractServer | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, port: int = 0) -> int:
        """Listen on ``port`` (0: any free one); the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` deliveries arrived (False after ``timeout`` seconds)."""
        deadline = time.perf_counter() + timeout
        while len(self.deliveries) < count:
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                block = await reader.readuntil(FS + CR)
                start = block.find(VT)
                message = block[start + 1:-2] if start >= 0 else b""
                fields = _fields(message)
                if fields is None:
                    self.malformed += 1
                    continue
                control_id, sample, test = fields
                if self.silent:
                    self.unanswered += 1
                    continue
                writer.write(VT + _ack(control_id) + FS + CR)
                self.deliveries.append(Delivery(control_id, sample, test, time.perf_counter()))
                self._arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _fields(message: bytes) -> tuple[str, str, str] | None:
    control_id = sample = test = ""
    for segment in message.split(CR):
        parts = segment.split(b"|")
        if parts[0] == b"MSH" and len(parts) > 9:
            control_id = parts[9].decode("utf-8", "replace")
        elif parts[0] == b"OBR" and len(parts) > 3:
            sample = parts[3].split(b"^")[0].decode("utf-8", "replace")
        elif parts[0] == b"OBX" and len(parts) > 3 and not test:
            test = parts[3].split(b"^")[0].decode("utf-8", "replace")
    if not control_id:
        return None
    return control_id, sample, test


def _ack(control_id: str) -> bytes:
    stamp = time.strftime("%Y%m%d%H%M%S")
    return (f"MSH|^~\\&|HIS|BV_BENCH|LIS|LAB|{stamp}||ACK^R01^ACK|A{control_id}|P|2.5.1\r"
            f"MSA|AA|{control_id}\r").encode()
