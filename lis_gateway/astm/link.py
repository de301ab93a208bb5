"""E1381 (CLSI LIS1-A) link layer as a sans-IO state machine.

Theory of operation
-------------------
Every link transition lives in this file, in :data:`TRANSITIONS`. The same
class serves both roles: the gateway runs it as ``Role.COMPUTER``; the
simulator and the tests run it as ``Role.INSTRUMENT``. Both roles send and
receive.

States (:class:`LinkState`):

* ``NEUTRAL``: idle; answers ENQ; bids (sends ENQ) when messages are queued
  and the bid delay has passed.
* ``AWAITING_ENQ_REPLY``: we sent ENQ. ACK starts our transfer; NAK (busy)
  makes us wait 10 s and bid again, at most 6 times (§ establishment);
  ENQ is contention: the instrument has priority, so the computer yields
  for 20 s and the instrument re-bids after 1 s; no reply in 15 s: EOT.
* ``AWAITING_FRAME_REPLY``: we sent a frame. ACK: next frame (or EOT when
  done). NAK: the same frame again, at most 6 tries, then EOT. EOT: receiver
  interrupt (the frame counts as accepted); we finish the message being sent,
  then stop and re-bid after 15 s. No reply in 15 s: EOT and abort.
  **Deliberate departure:** E1381 treats "any other character" as NAK. We
  ignore it (with a deviation) and let the 15 s timer decide: garbage that
  precedes a genuine ACK would otherwise cause one extra retransmission,
  shift every later reply by one frame, and let a stale ACK confirm a frame
  the receiver never got (found by the lossy-line property test).
* ``RECEIVING``: the peer has the line. Each frame is checked (checksum on
  the raw bytes, then frame number): good: ACK; the previous frame again
  (our ACK was lost): ACK and discard; bad: NAK. EOT ends the transfer. No
  byte for 30 s (configurable, Roche uses 15 s): abort and go neutral.
* ``HOLDING_ENQ``: manual-enq mode only: the peer sent ENQ and the answer
  waits for :meth:`LinkConnection.accept_transfer` (ACK) or
  :meth:`LinkConnection.refuse_transfer` (NAK: a receiver that is not ready
  answers ENQ with NAK, and the sender waits at least 10 s before its next
  ENQ, E1381 8.2.5). Peer input received meanwhile is deferred. If the owner
  does not decide within the reply timer (15 s, after which the sender gives
  up anyway), the ENQ is answered NAK.
* ``HOLDING_ACK``: manual-ack mode only: a frame was accepted and its ACK
  waits for :meth:`LinkConnection.acknowledge` (durable-before-acknowledged).
  Peer input received meanwhile is deferred and processed after the release.

Inputs (:class:`LinkInput`) are classified from the received byte stream
(control bytes, frames, noise), from timer expiry, and from local calls.
Peer faults become events; local misuse raises :class:`LocalProtocolError`.
Time is always an argument (``now``, seconds); the core never reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import constants as C
from .errors import LocalProtocolError
from .events import (
    AbortReason,
    BidDeferred,
    Deviation,
    DeviationKind,
    DuplicateFrame,
    Event,
    FrameAccepted,
    FrameRejected,
    MessageSent,
    SendFailed,
    TransferAborted,
    TransferEnded,
    TransferRefused,
    TransferRequested,
    TransferStarted,
    UnexpectedInput,
)
from .frames import (
    ChecksumMode,
    FrameProblem,
    FrameScanner,
    Token,
    TokenKind,
    check_frame,
    encode_frame,
    restricted_characters,
    split_text,
)


class Role(enum.Enum):
    """Which end of the line this core plays (E1381 gives the instrument priority)."""

    INSTRUMENT = "instrument"
    COMPUTER = "computer"


class LinkState(enum.Enum):
    """States of the link; see the module docstring."""

    #: Idle: nobody holds the line.
    NEUTRAL = "neutral"
    #: We sent ENQ and wait for ACK/NAK.
    AWAITING_ENQ_REPLY = "awaiting-enq-reply"
    #: We sent a frame and wait for ACK/NAK/EOT.
    AWAITING_FRAME_REPLY = "awaiting-frame-reply"
    #: The peer holds the line; we wait for frames or EOT.
    RECEIVING = "receiving"
    #: A frame was accepted; its ACK waits for the owner (manual-ack mode).
    HOLDING_ACK = "holding-ack"
    #: The peer sent ENQ; the answer waits for the owner (manual-enq mode).
    HOLDING_ENQ = "holding-enq"


class LinkInput(enum.Enum):
    """Inputs of the state table."""

    BID = "bid"  #: local: messages are queued and we may bid now
    RECV_ENQ = "recv-enq"
    RECV_ACK = "recv-ack"
    RECV_NAK = "recv-nak"
    RECV_EOT = "recv-eot"
    RECV_OTHER = "recv-other"  #: any other byte or a frame where a reply is awaited
    FRAME_GOOD = "frame-good"
    FRAME_DUPLICATE = "frame-duplicate"
    FRAME_BAD = "frame-bad"
    FRAME_WITHOUT_ENQ = "frame-without-enq"  #: a frame in NEUTRAL (enq-optional dialect)
    TIMEOUT = "timeout"
    LOCAL_ACK = "local-ack"
    LOCAL_NAK = "local-nak"
    LOCAL_ACCEPT = "local-accept"  #: the owner takes the peer's transfer (ENQ answered ACK)
    LOCAL_REFUSE = "local-refuse"  #: the owner is not ready (ENQ answered NAK)


S = LinkState
I = LinkInput  # noqa: E741 - short alias used only to keep the table readable

#: Every transition: (state, input) -> (method name, allowed next states).
#: A method picks among its allowed next states (for example "next frame" or
#: "done"); a pair missing from the table emits :class:`UnexpectedInput` and
#: resets to NEUTRAL, or raises for local inputs.
TRANSITIONS: dict[tuple[LinkState, LinkInput], tuple[str, frozenset[LinkState]]] = {
    # NEUTRAL
    (S.NEUTRAL, I.BID): ("_send_enq", frozenset({S.AWAITING_ENQ_REPLY})),
    (S.NEUTRAL, I.RECV_ENQ): ("_answer_enq", frozenset({S.RECEIVING, S.NEUTRAL, S.HOLDING_ENQ})),
    (S.NEUTRAL, I.RECV_ACK): ("_ignore", frozenset({S.NEUTRAL})),
    (S.NEUTRAL, I.RECV_NAK): ("_ignore", frozenset({S.NEUTRAL})),
    (S.NEUTRAL, I.RECV_EOT): ("_ignore", frozenset({S.NEUTRAL})),
    (S.NEUTRAL, I.RECV_OTHER): ("_ignore", frozenset({S.NEUTRAL})),
    (S.NEUTRAL, I.FRAME_WITHOUT_ENQ): ("_implicit_start", frozenset({S.RECEIVING})),
    # AWAITING_ENQ_REPLY
    (S.AWAITING_ENQ_REPLY, I.RECV_ACK): ("_first_frame", frozenset({S.AWAITING_FRAME_REPLY})),
    (S.AWAITING_ENQ_REPLY, I.RECV_NAK): ("_bid_refused", frozenset({S.NEUTRAL})),
    (S.AWAITING_ENQ_REPLY, I.RECV_ENQ): ("_contention", frozenset({S.NEUTRAL})),
    (S.AWAITING_ENQ_REPLY, I.RECV_EOT): ("_ignore", frozenset({S.AWAITING_ENQ_REPLY})),
    (S.AWAITING_ENQ_REPLY, I.RECV_OTHER): ("_ignore", frozenset({S.AWAITING_ENQ_REPLY})),
    (S.AWAITING_ENQ_REPLY, I.TIMEOUT): ("_enq_timeout", frozenset({S.NEUTRAL})),
    (S.AWAITING_ENQ_REPLY, I.BID): ("_ignore", frozenset({S.AWAITING_ENQ_REPLY})),
    # AWAITING_FRAME_REPLY
    (S.AWAITING_FRAME_REPLY, I.RECV_ACK): (
        "_frame_acked", frozenset({S.AWAITING_FRAME_REPLY, S.NEUTRAL})),
    (S.AWAITING_FRAME_REPLY, I.RECV_NAK): (
        "_frame_refused", frozenset({S.AWAITING_FRAME_REPLY, S.NEUTRAL})),
    (S.AWAITING_FRAME_REPLY, I.RECV_OTHER): ("_stray_reply", frozenset({S.AWAITING_FRAME_REPLY})),
    (S.AWAITING_FRAME_REPLY, I.RECV_ENQ): ("_stray_reply", frozenset({S.AWAITING_FRAME_REPLY})),
    (S.AWAITING_FRAME_REPLY, I.RECV_EOT): (
        "_interrupted", frozenset({S.AWAITING_FRAME_REPLY, S.NEUTRAL})),
    (S.AWAITING_FRAME_REPLY, I.TIMEOUT): ("_frame_timeout", frozenset({S.NEUTRAL})),
    (S.AWAITING_FRAME_REPLY, I.BID): ("_ignore", frozenset({S.AWAITING_FRAME_REPLY})),
    # RECEIVING
    (S.RECEIVING, I.FRAME_GOOD): ("_accept_frame", frozenset({S.RECEIVING, S.HOLDING_ACK})),
    (S.RECEIVING, I.FRAME_DUPLICATE): ("_ack_duplicate", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.FRAME_BAD): ("_reject_frame", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.RECV_EOT): ("_transfer_ended", frozenset({S.NEUTRAL})),
    (S.RECEIVING, I.RECV_ENQ): ("_enq_while_receiving", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.RECV_ACK): ("_ignore", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.RECV_NAK): ("_ignore", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.RECV_OTHER): ("_ignore", frozenset({S.RECEIVING})),
    (S.RECEIVING, I.TIMEOUT): ("_receive_timeout", frozenset({S.NEUTRAL})),
    (S.RECEIVING, I.BID): ("_ignore", frozenset({S.RECEIVING})),
    # HOLDING_ACK: peer input waits until the owner releases the ACK
    (S.HOLDING_ACK, I.LOCAL_ACK): ("_release_ack", frozenset({S.RECEIVING})),
    (S.HOLDING_ACK, I.LOCAL_NAK): ("_release_nak", frozenset({S.RECEIVING})),
    (S.HOLDING_ACK, I.RECV_ENQ): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.RECV_ACK): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.RECV_NAK): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.RECV_EOT): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.RECV_OTHER): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.TIMEOUT): ("_receive_timeout", frozenset({S.NEUTRAL})),
    (S.HOLDING_ACK, I.BID): ("_ignore", frozenset({S.HOLDING_ACK})),
    # HOLDING_ENQ: the peer's ENQ waits for the owner's answer; its next input waits too
    (S.HOLDING_ENQ, I.LOCAL_ACCEPT): ("_grant_enq", frozenset({S.RECEIVING})),
    (S.HOLDING_ENQ, I.LOCAL_REFUSE): ("_refuse_enq", frozenset({S.NEUTRAL})),
    (S.HOLDING_ENQ, I.RECV_ENQ): ("_defer", frozenset({S.HOLDING_ENQ})),
    (S.HOLDING_ENQ, I.RECV_ACK): ("_defer", frozenset({S.HOLDING_ENQ})),
    (S.HOLDING_ENQ, I.RECV_NAK): ("_defer", frozenset({S.HOLDING_ENQ})),
    (S.HOLDING_ENQ, I.RECV_EOT): ("_defer", frozenset({S.HOLDING_ENQ})),
    (S.HOLDING_ENQ, I.RECV_OTHER): ("_defer", frozenset({S.HOLDING_ENQ})),
    (S.HOLDING_ENQ, I.TIMEOUT): ("_undecided_enq", frozenset({S.NEUTRAL})),
    (S.HOLDING_ENQ, I.BID): ("_ignore", frozenset({S.HOLDING_ENQ})),
}

#: Inputs that only local calls produce: a missing row for these raises.
LOCAL_INPUTS = frozenset({I.LOCAL_ACK, I.LOCAL_NAK, I.LOCAL_ACCEPT, I.LOCAL_REFUSE})


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Per-analyzer switches of the link layer (dialect options).

    Attributes:
        role: ``COMPUTER`` for the gateway, ``INSTRUMENT`` for simulators.
        checksum_mode: strict (NAK on mismatch), log-only, or none (dialect sends none).
        repair_line_endings: undo CR/LF damage from terminal servers before the
            checksum check (raw bytes are recorded before any repair).
        lenient_frame_numbers: accept an unexpected frame number with a deviation
            instead of NAK (Mindray numbers up to 8; some fixtures repeat 1).
        enq_optional: accept frames that arrive without an ENQ first.
        manual_ack: hold each frame's ACK until :meth:`LinkConnection.acknowledge`.
        manual_enq: hold the answer to the peer's ENQ until
            :meth:`LinkConnection.accept_transfer` or :meth:`LinkConnection.refuse_transfer`.
        honour_interrupt: stop sending at the next message end when the receiver
            answers EOT (receiver interrupt); otherwise treat that EOT as ACK.
        max_text: most text bytes per frame we send (240 standard; 0 = unlimited).
        per_record_frames: each record its own low-level message (ETX per record).
        lowercase_checksum: write checksums in lower case (a dialect option).
        receive_timeout: E1381 receiver timer (30 s; Roche states 15 s).
        reply_timeout: E1381 sender timer for ENQ and frame replies (15 s).
        busy_retry_delay: wait after a busy NAK before bidding again (10 s).
        contention_delay: wait after losing contention (computer 20 s, instrument 1 s).
        interrupt_delay: wait after honouring a receiver interrupt (15 s).
        max_attempts: tries per frame and per bid before giving up (6).
        hard_max_frame: frames longer than this are dropped as garbage.
    """

    role: Role = Role.COMPUTER
    checksum_mode: ChecksumMode = ChecksumMode.STRICT
    repair_line_endings: bool = False
    lenient_frame_numbers: bool = False
    enq_optional: bool = False
    manual_ack: bool = False
    manual_enq: bool = False
    honour_interrupt: bool = True
    max_text: int = C.STANDARD_MAX_TEXT
    per_record_frames: bool = True
    lowercase_checksum: bool = False
    receive_timeout: float = C.RECEIVE_TIMEOUT
    reply_timeout: float = C.FRAME_REPLY_TIMEOUT
    busy_retry_delay: float = C.BUSY_RETRY_DELAY
    contention_delay: float | None = None
    interrupt_delay: float = C.INTERRUPT_DELAY
    max_attempts: int = C.MAX_ATTEMPTS
    hard_max_frame: int = C.DEFAULT_HARD_MAX_FRAME

    @property
    def effective_contention_delay(self) -> float:
        """The contention back-off for this role (E1381: computer 20 s, instrument 1 s)."""
        if self.contention_delay is not None:
            return self.contention_delay
        if self.role is Role.COMPUTER:
            return C.CONTENTION_DELAY_COMPUTER
        return C.CONTENTION_DELAY_INSTRUMENT


class LinkConnection:
    """One E1381 link (one serial line or one TCP connection), sans-IO.

    Feed received bytes with :meth:`receive_data`, queue outgoing messages
    with :meth:`send`, fire :meth:`handle_timer` at :meth:`get_timer`, and
    after each call drain :meth:`data_to_send` and :meth:`events`.
    """

    def __init__(self, config: LinkConfig | None = None) -> None:
        self.config = config or LinkConfig()
        self.state = LinkState.NEUTRAL
        self._scanner = FrameScanner(
            checksum_chars=0 if self.config.checksum_mode is ChecksumMode.NONE else 2,
            hard_max_frame=self.config.hard_max_frame)
        self._out = bytearray()
        self._events: list[Event] = []
        self._deadline: float | None = None
        self._busy = False
        self._interrupt_next = False
        # sender side
        self._queue: deque[bytes] = deque()
        self._current: bytes | None = None
        self._frames: list[tuple[bytes, bool]] = []
        self._frame_index = 0
        self._fn = 0
        self._attempts = 0
        self._bid_attempts = 0
        self._not_before = 0.0
        self._stop_after_message = False
        # receiver side
        self._last_fn = 0
        self._last_raw = b""
        self._frames_received = 0
        self._deferred: list[Token] = []
        self._prev_last: tuple[int, bytes] = (0, b"")
        self._token: Token | None = None
        self._checked = check_frame(b"\x021\x03", ChecksumMode.NONE)  # placeholder until a frame
        self._enq_offset = 0  # where the ENQ waiting in HOLDING_ENQ was received
        self._now = 0.0
        self._actions: dict[tuple[LinkState, LinkInput],
                            tuple[Callable[[float], LinkState], frozenset[LinkState]]] = {
            key: (getattr(self, method), allowed)
            for key, (method, allowed) in TRANSITIONS.items()}

    # ------------------------------------------------------------------ API

    def receive_data(self, data: bytes, now: float) -> None:
        """Process bytes received from the peer.

        Args:
            data: any number of bytes, split anywhere.
            now: the current time in seconds.
        """
        self._now = now
        if self.state in (LinkState.RECEIVING, LinkState.HOLDING_ACK) and data:
            self._deadline = now + self.config.receive_timeout  # any byte keeps it alive
        for token in self._scanner.feed(data):
            self._process_token(token, now)
        self._maybe_bid(now)

    def send(self, message: bytes, now: float) -> None:
        """Queue an E1394 message (records ending in CR) for sending.

        Args:
            message: encoded message text (see :mod:`lis_gateway.astm.codec`).
            now: the current time.
        """
        if not message:
            raise LocalProtocolError("cannot send an empty message")
        self._queue.append(message)
        self._now = now
        self._maybe_bid(now)

    def acknowledge(self, now: float) -> None:
        """Release the held ACK of the last accepted frame (manual-ack mode).

        Raises:
            LocalProtocolError: no frame is waiting for its acknowledgement.
        """
        self._dispatch(I.LOCAL_ACK, now)
        self._replay_deferred(now)

    def reject(self, now: float) -> None:
        """Answer the held frame with NAK (for example, the commit failed).

        The peer will send the frame again; nothing is lost.

        Raises:
            LocalProtocolError: no frame is waiting for its acknowledgement.
        """
        self._dispatch(I.LOCAL_NAK, now)
        self._replay_deferred(now)

    def accept_transfer(self, now: float) -> None:
        """Answer the held ENQ with ACK: the peer may send (manual-enq mode).

        Raises:
            LocalProtocolError: no ENQ is waiting for its answer.
        """
        self._dispatch(I.LOCAL_ACCEPT, now)
        self._replay_deferred(now)

    def refuse_transfer(self, now: float) -> None:
        """Answer the held ENQ with NAK: not ready (E1381 8.2.5, the peer bids again later).

        Raises:
            LocalProtocolError: no ENQ is waiting for its answer.
        """
        self._dispatch(I.LOCAL_REFUSE, now)
        self._replay_deferred(now)

    def set_busy(self, busy: bool) -> None:
        """While busy, the peer's ENQ is answered with NAK (E1381 busy)."""
        self._busy = busy

    def request_interrupt(self) -> None:
        """Answer the peer's next good frame with EOT (receiver interrupt)."""
        self._interrupt_next = True

    def get_timer(self) -> float | None:
        """Return the time at which :meth:`handle_timer` must be called, or None."""
        if self.state is LinkState.NEUTRAL:
            return self._not_before if self._queue else None
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Fire the timer if it is due (calling it early is harmless)."""
        self._now = now
        due = self.get_timer()
        if due is None or now < due:
            return
        if self.state is LinkState.NEUTRAL:
            self._maybe_bid(now)
        else:
            self._dispatch(I.TIMEOUT, now)
            self._maybe_bid(now)

    def connection_lost(self, now: float) -> None:
        """The transport closed: void any transfer, hand back unsent messages."""
        self._now = now
        for token in self._scanner.reset():
            self._emit_broken(token)
        if self.state in (LinkState.RECEIVING, LinkState.HOLDING_ACK):
            self._events.append(TransferAborted(AbortReason.CONNECTION_LOST))
        pending = self._take_unsent()
        if pending:
            self._events.append(SendFailed(pending, AbortReason.CONNECTION_LOST))
        self._deferred.clear()
        self._deadline = None
        self.state = LinkState.NEUTRAL

    def data_to_send(self) -> bytes:
        """Return and clear the bytes the core wants written to the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> list[Event]:
        """Return and clear the events produced since the last call."""
        out = self._events
        self._events = []
        return out

    @property
    def queued(self) -> int:
        """Number of messages not yet delivered (including the one being sent)."""
        return len(self._queue) + (1 if self._current is not None else 0)

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, inp: LinkInput, now: float, token: Token | None = None) -> None:
        row = TRANSITIONS.get((self.state, inp))
        if row is None:
            if inp in LOCAL_INPUTS:
                raise LocalProtocolError(f"{inp.value} is not allowed in state {self.state.value}")
            self._events.append(UnexpectedInput(self.state.value, inp.value))
            self._reset_to_neutral(now)
            return
        action, allowed = self._actions[(self.state, inp)]
        self._token = token
        new_state = action(now)
        if new_state not in allowed:  # a bug in this file, never a peer fault
            raise RuntimeError(f"{row[0]} chose {new_state} outside {allowed}")
        self.state = new_state

    def _process_token(self, token: Token, now: float) -> None:
        kind = token.kind
        if kind is TokenKind.NOISE:
            self._noise(token, now)
        elif kind is TokenKind.BROKEN_FRAME:
            self._emit_broken(token)
        elif kind is TokenKind.CONTROL:
            self._dispatch(_CONTROL_INPUT[token.data[0]], now, token)
        elif self.state is LinkState.RECEIVING:
            self._dispatch(self._classify_frame(token), now, token)
        elif self.state is LinkState.NEUTRAL and self.config.enq_optional:
            self._dispatch(I.FRAME_WITHOUT_ENQ, now, token)
            self._dispatch(self._classify_frame(token), now, token)
        else:
            if self.state in (LinkState.NEUTRAL, LinkState.AWAITING_ENQ_REPLY):
                self._events.append(Deviation(DeviationKind.DATA_IGNORED,
                                              f"frame in state {self.state.value}", token.offset))
            self._dispatch(I.RECV_OTHER, now, token)

    def _noise(self, token: Token, now: float) -> None:
        awaiting = self.state in (LinkState.AWAITING_FRAME_REPLY, LinkState.HOLDING_ACK)
        if token.data.strip(b"\r\n\x00") == b"":
            return  # frame trailers and line noise: meaningless everywhere
        if awaiting:
            self._dispatch(I.RECV_OTHER, now, token)
        else:
            self._events.append(Deviation(DeviationKind.DATA_IGNORED,
                                          f"{len(token.data)} bytes", token.offset))

    def _classify_frame(self, token: Token) -> LinkInput:
        checked = check_frame(token.data, self.config.checksum_mode,
                              repair_line_endings=self.config.repair_line_endings)
        self._checked = checked
        if not checked.checksum_ok and self.config.checksum_mode is ChecksumMode.STRICT:
            return I.FRAME_BAD
        if checked.fn == (self._last_fn + 1) % 8:
            return I.FRAME_GOOD
        if checked.fn == self._last_fn and token.data == self._last_raw:
            return I.FRAME_DUPLICATE
        if self.config.lenient_frame_numbers:
            return I.FRAME_GOOD
        return I.FRAME_BAD

    def _maybe_bid(self, now: float) -> None:
        if self.state is LinkState.NEUTRAL and self._queue and now >= self._not_before:
            self._dispatch(I.BID, now)

    def _replay_deferred(self, now: float) -> None:
        while self._deferred and self.state not in (LinkState.HOLDING_ACK,
                                                    LinkState.HOLDING_ENQ):
            self._process_token(self._deferred.pop(0), now)
        self._maybe_bid(now)

    # -------------------------------------------------------------- actions

    def _ignore(self, now: float) -> LinkState:
        return self.state

    def _defer(self, now: float) -> LinkState:
        if self._token is not None:
            self._deferred.append(self._token)
        return self.state

    def _send_enq(self, now: float) -> LinkState:
        self._out += C.ENQ
        self._deadline = now + self.config.reply_timeout
        return S.AWAITING_ENQ_REPLY

    def _answer_enq(self, now: float) -> LinkState:
        if self._busy:
            return self._refuse_enq(now)
        if self.config.manual_enq:
            self._enq_offset = self._token.offset if self._token else 0
            self._deadline = now + self.config.reply_timeout
            self._events.append(TransferRequested(self._enq_offset))
            return S.HOLDING_ENQ
        return self._grant_enq(now)

    def _grant_enq(self, now: float) -> LinkState:
        self._out += C.ACK
        self._start_receiving(now)
        offset = self._enq_offset if self.state is S.HOLDING_ENQ else self._token_offset()
        self._events.append(TransferStarted(offset))
        return S.RECEIVING

    def _refuse_enq(self, now: float, cause: str = "busy") -> LinkState:
        offset = self._enq_offset if self.state is S.HOLDING_ENQ else self._token_offset()
        self._out += C.NAK
        self._deadline = None
        self._events.append(TransferRefused(offset, cause))
        return S.NEUTRAL

    def _undecided_enq(self, now: float) -> LinkState:
        self._deferred.clear()  # the peer gave up on this ENQ too (its own 15 s timer)
        return self._refuse_enq(now, "no-decision")

    def _token_offset(self) -> int:
        return self._token.offset if self._token else 0

    def _implicit_start(self, now: float) -> LinkState:
        offset = self._token.offset if self._token else 0
        self._events.append(Deviation(DeviationKind.NO_ENQ, "frame without ENQ", offset))
        self._events.append(TransferStarted(offset))
        self._start_receiving(now)
        return S.RECEIVING

    def _start_receiving(self, now: float) -> None:
        self._last_fn = 0
        self._last_raw = b""
        self._frames_received = 0
        self._deadline = now + self.config.receive_timeout

    def _first_frame(self, now: float) -> LinkState:
        self._bid_attempts = 0
        self._fn = 0
        self._stop_after_message = False
        self._next_message()
        self._send_current_frame(now)
        return S.AWAITING_FRAME_REPLY

    def _next_message(self) -> None:
        self._current = self._queue.popleft()
        self._frames = split_text(self._current, max_text=self.config.max_text,
                                  per_record=self.config.per_record_frames)
        self._frame_index = 0

    def _send_current_frame(self, now: float) -> None:
        text, final = self._frames[self._frame_index]
        if self._attempts == 0:
            self._fn = (self._fn + 1) % 8
        self._out += encode_frame(
            self._fn, text, final=final, lowercase=self.config.lowercase_checksum,
            with_checksum=self.config.checksum_mode is not ChecksumMode.NONE)
        self._deadline = now + self.config.reply_timeout

    def _bid_refused(self, now: float) -> LinkState:
        return self._defer_bid(now, "busy", self.config.busy_retry_delay, AbortReason.BID_REFUSED)

    def _enq_timeout(self, now: float) -> LinkState:
        self._out += C.EOT  # E1381: no reply to ENQ within 15 s: termination phase
        return self._defer_bid(now, "no-reply", self.config.busy_retry_delay,
                               AbortReason.REPLY_TIMEOUT)

    def _defer_bid(self, now: float, cause: str, delay: float, reason: AbortReason) -> LinkState:
        self._bid_attempts += 1
        self._deadline = None
        if self._bid_attempts >= self.config.max_attempts:
            self._bid_attempts = 0
            self._events.append(SendFailed(self._take_unsent(), reason))
            return S.NEUTRAL
        self._not_before = now + delay
        self._events.append(BidDeferred(cause, self._bid_attempts, self._not_before))
        return S.NEUTRAL

    def _contention(self, now: float) -> LinkState:
        # E1381: the instrument has priority. The computer stops bidding and
        # waits for the instrument's next ENQ; the instrument re-bids after 1 s.
        self._deadline = None
        self._not_before = now + self.config.effective_contention_delay
        self._events.append(BidDeferred("contention", self._bid_attempts, self._not_before))
        return S.NEUTRAL

    def _frame_acked(self, now: float) -> LinkState:
        self._attempts = 0
        self._frame_index += 1
        if self._frame_index < len(self._frames):
            self._send_current_frame(now)
            return S.AWAITING_FRAME_REPLY
        if self._current is not None:
            self._events.append(MessageSent(self._current))
        self._current = None
        if self._queue and not self._stop_after_message:
            self._next_message()
            self._send_current_frame(now)
            return S.AWAITING_FRAME_REPLY
        self._out += C.EOT
        self._deadline = None
        if self._stop_after_message:
            self._not_before = now + self.config.interrupt_delay
            if self._queue:
                self._events.append(BidDeferred("interrupt", 0, self._not_before))
        return S.NEUTRAL

    def _interrupted(self, now: float) -> LinkState:
        # E1381: EOT in reply to a frame means "accepted, please stop". We
        # finish the message in progress (a partial message would be void)
        # and then give up the line.
        if self.config.honour_interrupt:
            self._stop_after_message = True
        return self._frame_acked(now)

    def _frame_refused(self, now: float) -> LinkState:
        self._attempts += 1
        if self._attempts >= self.config.max_attempts:
            return self._abort_sending(AbortReason.RETRIES_EXHAUSTED)
        self._send_current_frame(now)
        return S.AWAITING_FRAME_REPLY

    def _stray_reply(self, now: float) -> LinkState:
        token = self._token
        self._events.append(Deviation(DeviationKind.DATA_IGNORED, "stray bytes awaiting a reply",
                                      token.offset if token else 0))
        return S.AWAITING_FRAME_REPLY

    def _frame_timeout(self, now: float) -> LinkState:
        return self._abort_sending(AbortReason.REPLY_TIMEOUT)

    def _abort_sending(self, reason: AbortReason) -> LinkState:
        self._out += C.EOT
        self._deadline = None
        self._events.append(TransferAborted(reason))
        self._events.append(SendFailed(self._take_unsent(), reason))
        return S.NEUTRAL

    def _take_unsent(self) -> tuple[bytes, ...]:
        pending = ([self._current] if self._current is not None else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        self._frames = []
        self._attempts = 0
        return tuple(pending)

    def _accept_frame(self, now: float) -> LinkState:
        token, checked = self._frame_token(), self._checked
        self._report_frame_deviations(token, now)
        self._prev_last = (self._last_fn, self._last_raw)
        self._last_fn = checked.fn
        self._last_raw = token.data
        self._frames_received += 1
        held = self.config.manual_ack
        self._events.append(FrameAccepted(checked.fn, checked.text, checked.final,
                                          token.offset, held))
        self._deadline = now + self.config.receive_timeout
        if held:
            return S.HOLDING_ACK
        self._send_frame_reply()
        return S.RECEIVING

    def _send_frame_reply(self) -> None:
        if self._interrupt_next:
            self._interrupt_next = False
            self._out += C.EOT
        else:
            self._out += C.ACK

    def _report_frame_deviations(self, token: Token, now: float) -> None:
        checked, off = self._checked, token.offset
        if len(token.data) + 2 > C.STANDARD_MAX_FRAME:
            self._events.append(Deviation(DeviationKind.FRAME_TOO_LONG,
                                          f"{len(token.data) + 2} characters", off))
        if checked.repaired:
            self._events.append(Deviation(DeviationKind.LINE_ENDINGS_REPAIRED, "", off))
        if not checked.checksum_ok:
            self._events.append(Deviation(
                DeviationKind.CHECKSUM_IGNORED,
                _checksum_detail(checked.received, checked.expected), off))
        if checked.fn != (self._last_fn + 1) % 8:
            self._events.append(Deviation(
                DeviationKind.FRAME_NUMBER_IGNORED,
                f"got {checked.fn}, expected {(self._last_fn + 1) % 8}", off))
        bad = restricted_characters(checked.text)
        if bad:
            self._events.append(Deviation(DeviationKind.RESTRICTED_CHARACTER,
                                          f"{len(bad)} at text offset {bad[0]}", off))

    def _ack_duplicate(self, now: float) -> LinkState:
        self._events.append(DuplicateFrame(self._checked.fn, self._frame_token().offset))
        self._out += C.ACK
        self._deadline = now + self.config.receive_timeout
        return S.RECEIVING

    def _reject_frame(self, now: float) -> LinkState:
        token = self._frame_token()
        checked = self._checked
        if not checked.checksum_ok:
            problem = FrameProblem.BAD_CHECKSUM
            detail = _checksum_detail(checked.received, checked.expected)
        else:
            problem = FrameProblem.BAD_FRAME_NUMBER
            detail = f"got {checked.fn}, expected {(self._last_fn + 1) % 8}"
        self._events.append(FrameRejected(problem, checked.fn, token.offset, detail))
        self._out += C.NAK
        self._deadline = now + self.config.receive_timeout
        return S.RECEIVING

    def _transfer_ended(self, now: float) -> LinkState:
        self._events.append(TransferEnded(self._token.offset if self._token else 0))
        self._deadline = None
        return S.NEUTRAL

    def _enq_while_receiving(self, now: float) -> LinkState:
        offset = self._token.offset if self._token else 0
        if self._frames_received:
            self._events.append(TransferAborted(AbortReason.PEER_RESTARTED))
        self._events.append(Deviation(DeviationKind.REPEATED_ENQ, "", offset))
        self._out += C.ACK
        self._start_receiving(now)
        return S.RECEIVING

    def _receive_timeout(self, now: float) -> LinkState:
        for token in self._scanner.reset():
            self._emit_broken(token)
        self._events.append(TransferAborted(AbortReason.RECEIVE_TIMEOUT))
        self._deferred.clear()
        self._deadline = None
        return S.NEUTRAL

    def _release_ack(self, now: float) -> LinkState:
        self._send_frame_reply()
        self._deadline = now + self.config.receive_timeout
        return S.RECEIVING

    def _release_nak(self, now: float) -> LinkState:
        # The frame will come again with the same number: forget we took it.
        self._last_fn, self._last_raw = self._prev_last
        self._frames_received -= 1
        self._out += C.NAK
        self._deadline = now + self.config.receive_timeout
        return S.RECEIVING

    def _frame_token(self) -> Token:
        if self._token is None:  # only reachable through a bug in this file
            raise RuntimeError("frame action dispatched without a frame")
        return self._token

    def _emit_broken(self, token: Token) -> None:
        self._events.append(Deviation(DeviationKind.BROKEN_FRAME, token.detail, token.offset))

    def _reset_to_neutral(self, now: float) -> None:
        for token in self._scanner.reset():
            self._emit_broken(token)
        if self.state in (LinkState.RECEIVING, LinkState.HOLDING_ACK):
            self._events.append(TransferAborted(AbortReason.RECEIVE_TIMEOUT, "reset"))
        if self.state is LinkState.AWAITING_FRAME_REPLY:
            self._abort_sending(AbortReason.REPLY_TIMEOUT)
        self._deferred.clear()
        self._deadline = None
        self.state = LinkState.NEUTRAL


def _checksum_detail(received: bytes, expected: bytes) -> str:
    sent = received.decode("latin-1") or "nothing"
    return f"checksum sent {sent}, computed {expected.decode('latin-1')}"


_CONTROL_INPUT = {
    C.ENQ_B: LinkInput.RECV_ENQ,
    C.ACK_B: LinkInput.RECV_ACK,
    C.NAK_B: LinkInput.RECV_NAK,
    C.EOT_B: LinkInput.RECV_EOT,
}
