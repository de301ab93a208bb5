"""The analyzer end of an AU online link (sending texts), as a sans-IO state machine.

Theory of operation
-------------------
Used by the tests and the simulator to play an AU analyzer against the
gateway's :class:`~lis_gateway.au_online.link.AuLink`; the gateway itself
never sends. Every transition lives in :data:`TRANSITIONS`.

States (:class:`SenderState`):

* ``IDLE``: nothing on the line; a queued text is sent at once.
* ``AWAITING_REPLY``: a block was sent. ACK: the next block, or the text is
  done (``TextSent``) and the next queued text starts. NAK: the same block
  again, at most ``max_attempts`` tries in all (the AU5800 driver's 3
  retries), then ``TextFailed``. No reply within ``reply_timeout``: counted
  as a try and sent again. Any other byte is a deviation and ignored.

Time is an argument; the core never reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .blocks import ACK, NAK, encode_text
from .events import AbortReason, Deviation, DeviationKind, Event, TextFailed, TextSent


class SenderState(enum.Enum):
    """States of the analyzer end."""

    #: Nothing on the line.
    IDLE = "idle"
    #: A block was sent; its ACK or NAK is awaited.
    AWAITING_REPLY = "awaiting-reply"


class SenderInput(enum.Enum):
    """Inputs of the sender's table."""

    QUEUED = "queued"  #: a text is waiting to go
    RECV_ACK = "recv-ack"
    RECV_NAK = "recv-nak"
    RECV_OTHER = "recv-other"
    TIMEOUT = "timeout"


_S, _I = SenderState, SenderInput
#: Every transition: (state, input) -> (method name, allowed next states).
TRANSITIONS: dict[tuple[SenderState, SenderInput], tuple[str, frozenset[SenderState]]] = {
    (_S.IDLE, _I.QUEUED): ("_start_text", frozenset({_S.AWAITING_REPLY})),
    (_S.IDLE, _I.RECV_ACK): ("_stray", frozenset({_S.IDLE})),
    (_S.IDLE, _I.RECV_NAK): ("_stray", frozenset({_S.IDLE})),
    (_S.IDLE, _I.RECV_OTHER): ("_stray", frozenset({_S.IDLE})),
    (_S.IDLE, _I.TIMEOUT): ("_ignore", frozenset({_S.IDLE})),
    (_S.AWAITING_REPLY, _I.QUEUED): ("_ignore", frozenset({_S.AWAITING_REPLY})),
    (_S.AWAITING_REPLY, _I.RECV_ACK): ("_acked", frozenset({_S.AWAITING_REPLY, _S.IDLE})),
    (_S.AWAITING_REPLY, _I.RECV_NAK): ("_refused", frozenset({_S.AWAITING_REPLY, _S.IDLE})),
    (_S.AWAITING_REPLY, _I.RECV_OTHER): ("_stray", frozenset({_S.AWAITING_REPLY})),
    (_S.AWAITING_REPLY, _I.TIMEOUT): ("_no_reply", frozenset({_S.AWAITING_REPLY, _S.IDLE})),
}


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """The analyzer's settings.

    Attributes:
        with_bcc: append a BCC to every block.
        max_block: most text bytes per block (0: one block per text).
        reply_timeout: seconds to wait for ACK or NAK before sending again.
        max_attempts: tries per block (1 + 3 retries) before the text is given up.
    """

    with_bcc: bool = True
    max_block: int = 0
    reply_timeout: float = 10.0
    max_attempts: int = 4


class AuSender:
    """One analyzer end: queue texts with :meth:`send`, feed replies, drain output."""

    def __init__(self, config: SenderConfig | None = None) -> None:
        self.config = config or SenderConfig()
        self.state = SenderState.IDLE
        self._queue: deque[bytes] = deque()
        self._text = b""
        self._blocks: list[bytes] = []
        self._index = 0
        self._attempts = 0
        self._deadline: float | None = None
        self._offset = 0  # of the reply byte being processed
        self._out = bytearray()
        self._events: list[Event] = []
        self._actions: dict[tuple[SenderState, SenderInput],
                            tuple[Callable[[float], SenderState], frozenset[SenderState]]] = {
            key: (getattr(self, method), allowed)
            for key, (method, allowed) in TRANSITIONS.items()}

    def send(self, text: bytes, now: float) -> None:
        """Queue a text (starting with its distinction code)."""
        if not text:
            raise ValueError("cannot send an empty text")
        self._queue.append(text)
        self._dispatch(_I.QUEUED, now)

    def receive_data(self, data: bytes, now: float) -> None:
        """Process reply bytes from the host."""
        for b in data:
            inp = _I.RECV_ACK if b == ACK else _I.RECV_NAK if b == NAK else _I.RECV_OTHER
            self._dispatch(inp, now)
            self._offset += 1

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or None."""
        return self._deadline if self.state is SenderState.AWAITING_REPLY else None

    def handle_timer(self, now: float) -> None:
        """Fire the reply timer if it is due."""
        if self._deadline is not None and now >= self._deadline:
            self._dispatch(_I.TIMEOUT, now)

    def connection_lost(self) -> None:
        """Hand back the text on the line and every queued one."""
        pending = ([self._text] if self.state is SenderState.AWAITING_REPLY else [])
        pending += list(self._queue)
        self._queue.clear()
        self._events += [TextFailed(t, AbortReason.CONNECTION_LOST) for t in pending]
        self.state = SenderState.IDLE
        self._deadline = None

    @property
    def queued(self) -> int:
        """Texts not yet acknowledged (including the one on the line)."""
        return len(self._queue) + (self.state is SenderState.AWAITING_REPLY)

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the host."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> list[Event]:
        """Return and clear the events produced since the last call."""
        out = self._events
        self._events = []
        return out

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, inp: SenderInput, now: float) -> None:
        action, allowed = self._actions[self.state, inp]
        new_state = action(now)
        if new_state not in allowed:  # a bug in this file, never a peer fault
            raise RuntimeError(f"{TRANSITIONS[self.state, inp][0]} chose {new_state}")
        self.state = new_state

    def _ignore(self, now: float) -> SenderState:
        return self.state

    def _stray(self, now: float) -> SenderState:
        self._events.append(Deviation(DeviationKind.STRAY_REPLY, "", self._offset))
        return self.state

    def _start_text(self, now: float) -> SenderState:
        self._text = self._queue.popleft()
        self._blocks = encode_text(self._text, max_block=self.config.max_block,
                                   with_bcc=self.config.with_bcc)
        self._index = 0
        return self._send_block(now)

    def _send_block(self, now: float) -> SenderState:
        self._out += self._blocks[self._index]
        self._deadline = now + self.config.reply_timeout
        return SenderState.AWAITING_REPLY

    def _acked(self, now: float) -> SenderState:
        self._attempts = 0
        self._index += 1
        if self._index < len(self._blocks):
            return self._send_block(now)
        self._events.append(TextSent(self._text))
        return self._next(now)

    def _next(self, now: float) -> SenderState:
        self._deadline = None
        return self._start_text(now) if self._queue else SenderState.IDLE

    def _refused(self, now: float) -> SenderState:
        return self._again(now, AbortReason.RETRIES_EXHAUSTED)

    def _no_reply(self, now: float) -> SenderState:
        return self._again(now, AbortReason.REPLY_TIMEOUT)

    def _again(self, now: float, reason: AbortReason) -> SenderState:
        self._attempts += 1
        if self._attempts < self.config.max_attempts:
            return self._send_block(now)
        self._attempts = 0
        self._events.append(TextFailed(self._text, reason))
        return self._next(now)
