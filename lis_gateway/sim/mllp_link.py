"""The analyzer end of an MLLP link, sans-IO.

One message at a time waits for its acknowledgement (an ACK, or the QCK^Q02 /
RSP^K11 that answers a query), under a timeout. Messages the gateway sends
on its own (DSR^Q03, OML^O33 order downloads) are read for their tests and
answered as the analyzer family does (ACK^Q03, ORL^O34). Time is an
argument; :meth:`MllpAnalyzerLink.get_timer` says when
:meth:`MllpAnalyzerLink.handle_timer` is due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lis_gateway.hl7.ack import AckResult, interpret_ack
from lis_gateway.hl7.errors import AckError
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import BlockReceived, MllpFramer

from .astm_styles import QueryAnswer
from .hl7_styles import ordered_tests, query_answer, reply_to


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The message waiting was acknowledged (``ack.code`` AA, AE, AR, CA, ...)."""

    control_id: str
    ack: AckResult


@dataclass(frozen=True, slots=True)
class Answered:
    """The query waiting was answered (QCK^Q02 or RSP^K11)."""

    control_id: str
    answer: QueryAnswer


@dataclass(frozen=True, slots=True)
class OrdersReceived:
    """The gateway sent work (DSR^Q03, OML^O33); it has been answered."""

    tests: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotAcknowledged:
    """No acknowledgement came: ``reason`` is ``timeout`` or ``connection lost``."""

    control_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message from the gateway that answers nothing waiting (its type only)."""

    message_type: str


MllpLinkEvent = Acknowledged | Answered | OrdersReceived | NotAcknowledged | Ignored


class BusyError(RuntimeError):
    """:meth:`MllpAnalyzerLink.send` while a message still waits for its answer."""


class MllpAnalyzerLink:
    """Sends one message at a time and reads what the gateway sends back.

    Args:
        ack_timeout: seconds the gateway has to acknowledge a message.
        frame: puts a message on the wire (the family's prefix and suffix).
        reply_ids: MSH-10 of the analyzer's own answers (ACK^Q03, ORL^O34).
    """

    def __init__(self, *, ack_timeout: float, frame: Callable[[bytes], bytes],
                 reply_ids: Callable[[], str]) -> None:
        self.ack_timeout = ack_timeout
        self._frame = frame
        self._reply_ids = reply_ids
        self._framer = MllpFramer()
        self._pending: tuple[str, float] | None = None  # control ID, deadline
        self._out = bytearray()
        self._events: list[MllpLinkEvent] = []

    @property
    def busy(self) -> bool:
        """A message waits for its acknowledgement."""
        return self._pending is not None

    def send(self, message: bytes, control_id: str, now: float) -> None:
        """Put ``message`` (segments ending in CR) on the wire and wait for its answer.

        Raises:
            BusyError: another message is still waiting.
        """
        if self._pending is not None:
            raise BusyError("a message still waits for its acknowledgement")
        self._out += self._frame(message)
        self._pending = (control_id, now + self.ack_timeout)

    def receive_data(self, data: bytes, now: float) -> None:
        """Read what the gateway sent."""
        for event in self._framer.receive_data(data, now):
            if isinstance(event, BlockReceived):
                self._block(event.data, now)

    def _block(self, data: bytes, now: float) -> None:
        msg = parse_message(data)
        tests = ordered_tests(msg)
        if tests is not None:
            reply = reply_to(msg, self._reply_ids(), datetime.fromtimestamp(now, UTC))
            if reply is not None:
                self._out += self._frame(reply)
            self._events.append(OrdersReceived(tests))
            return
        try:
            ack = interpret_ack(msg)
        except AckError:
            self._events.append(Ignored(msg.message_type))
            return
        if self._pending is None or ack.acknowledges != self._pending[0]:
            self._events.append(Ignored(msg.message_type))
            return
        control_id = self._pending[0]
        self._pending = None
        answer = query_answer(msg)
        if answer is not None:
            self._events.append(Answered(control_id, answer))
        else:
            self._events.append(Acknowledged(control_id, ack))

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due (None: nothing waits)."""
        deadlines = [t for t in (self._framer.get_timer(),
                                 self._pending[1] if self._pending else None) if t is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Fire what is due: the framer's silence timer, the acknowledgement timeout."""
        for event in self._framer.handle_timer(now):
            if isinstance(event, BlockReceived):
                self._block(event.data, now)
        if self._pending is not None and now >= self._pending[1]:
            control_id, self._pending = self._pending[0], None
            self._events.append(NotAcknowledged(control_id, "timeout"))

    def connection_lost(self) -> None:
        """The connection is gone: whatever waited is not acknowledged."""
        self._framer.connection_lost()
        self._framer = MllpFramer()
        if self._pending is not None:
            control_id, self._pending = self._pending[0], None
            self._events.append(NotAcknowledged(control_id, "connection lost"))

    def data_to_send(self) -> bytes:
        """Bytes to write now."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def events(self) -> list[MllpLinkEvent]:
        """Events since the last call."""
        out, self._events = self._events, []
        return out
