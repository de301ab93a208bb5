"""The host end of a Beckman AU online link, as a sans-IO state machine.

Theory of operation
-------------------
Every link transition lives in this file, in :data:`TRANSITIONS`. What is
known of the handshake comes from third-party sources (the AU2700/5400 and
AU680/480 "Online Specifications" as other integrators describe them, and a
third-party AU5800 driver); no Beckman specification was available here:

* The analyzer sends a text (:mod:`.blocks`) and waits. The host answers
  every block with ACK (0x06) when it checks and NAK (0x15) when it does not;
  the analyzer sends a NAKed block again (the AU5800 driver retries 3 times,
  so :attr:`AuConfig.max_attempts` is 4). There is no ENQ, no EOT and no frame
  number.
* A long text is cut into blocks ending with ETB; the last ends with ETX.
  Each carries its own BCC and is acknowledged on its own.
* The host sends nothing else: host queries (``R`` texts, answered by ``S``
  texts in a model-specific layout) are acknowledged and handed over like
  any other text, and never answered, so the analyzer's own timeout for the
  answer runs out.

States (:class:`AuState`):

* ``IDLE``: between texts.
* ``CONTINUING``: blocks ending with ETB were accepted; the next block
  continues the text. No byte for ``receive_timeout``: the text is given up
  (``TextAborted``, its blocks handed out to be kept).
* ``HOLDING_ACK``: manual-ack mode: a text is complete and its last ACK
  waits for :meth:`AuLink.acknowledge` (durable before acknowledged) or
  :meth:`AuLink.reject` (NAK: the analyzer sends the last block again). Texts
  whose distinction code is in :attr:`AuConfig.immediate` (``DB``, ``DE``,
  ``DA``, ``DR``) are acknowledged at once. No timer runs (the owner always
  answers). The analyzer sends nothing new before its answer, so a block
  arriving meanwhile is the held block again (its reply timer ran out): a
  copy, or one with a bad BCC, is dropped and the one held answer serves it
  (a second answer would be taken for the analyzer's next block). Any other
  block (a sender that did not wait) is processed after the answer. If the
  owner takes longer than all of the analyzer's tries, the analyzer gives
  the text up and sends its next text; the late answer then reaches it as
  the answer to that text's first block. The store answers in milliseconds:
  this is written down, not handled.

Duplicates: when our ACK is lost, the analyzer sends the same block again. A
block byte-identical to the block acknowledged last is acknowledged and
dropped while a text continues, and after a multi-block text (a last block
alone is no text). A one-block text sent again is a whole text: it is handed
over again, and the store recognises it (same bytes, same content hash).

Faults from the analyzer become events; calling :meth:`AuLink.acknowledge`
or :meth:`AuLink.reject` with nothing held raises :class:`LocalProtocolError`.
Time is always an argument (``now``, seconds); the core never reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .blocks import ACK, NAK, BlockScanner, Token, TokenKind
from .codes import IMMEDIATE, kind_of
from .events import (
    AbortReason,
    AuMessage,
    BlockAccepted,
    BlockProblem,
    BlockRejected,
    Deviation,
    DeviationKind,
    DuplicateBlock,
    Event,
    LocalProtocolError,
    TextAborted,
    TextReceived,
)


class AuState(enum.Enum):
    """States of the host end; see the module docstring."""

    #: Between texts.
    IDLE = "idle"
    #: ETB blocks accepted; the text continues.
    CONTINUING = "continuing"
    #: A complete text's ACK waits for the owner.
    HOLDING_ACK = "holding-ack"


class AuInput(enum.Enum):
    """Inputs of the state table."""

    BLOCK_LAST = "block-last"  #: a good block ending with ETX
    BLOCK_MORE = "block-more"  #: a good block ending with ETB
    BLOCK_BAD = "block-bad"  #: the BCC does not match
    BLOCK_TOO_LONG = "block-too-long"  #: the text would go over the size limit
    BLOCK_DUPLICATE = "block-duplicate"  #: the block acknowledged last, again
    CONTROL = "control"  #: ENQ, EOT, ACK or NAK
    NOISE = "noise"  #: bytes outside a block
    BROKEN = "broken"  #: a block cut short
    TIMEOUT = "timeout"
    LOCAL_ACK = "local-ack"
    LOCAL_NAK = "local-nak"


S = AuState
I = AuInput  # noqa: E741 - short alias used only to keep the table readable

#: Every transition: (state, input) -> (method name, allowed next states).
#: A pair missing from the table is local misuse (only local inputs lack rows).
TRANSITIONS: dict[tuple[AuState, AuInput], tuple[str, frozenset[AuState]]] = {
    # IDLE
    (S.IDLE, I.BLOCK_LAST): ("_complete", frozenset({S.IDLE, S.HOLDING_ACK})),
    (S.IDLE, I.BLOCK_MORE): ("_continue", frozenset({S.CONTINUING})),
    (S.IDLE, I.BLOCK_BAD): ("_refuse_bad", frozenset({S.IDLE})),
    (S.IDLE, I.BLOCK_TOO_LONG): ("_refuse_too_long", frozenset({S.IDLE})),
    (S.IDLE, I.BLOCK_DUPLICATE): ("_ack_duplicate", frozenset({S.IDLE})),
    (S.IDLE, I.CONTROL): ("_deviation", frozenset({S.IDLE})),
    (S.IDLE, I.NOISE): ("_deviation", frozenset({S.IDLE})),
    (S.IDLE, I.BROKEN): ("_deviation", frozenset({S.IDLE})),
    (S.IDLE, I.TIMEOUT): ("_ignore", frozenset({S.IDLE})),
    # CONTINUING
    (S.CONTINUING, I.BLOCK_LAST): ("_complete", frozenset({S.IDLE, S.HOLDING_ACK})),
    (S.CONTINUING, I.BLOCK_MORE): ("_continue", frozenset({S.CONTINUING})),
    (S.CONTINUING, I.BLOCK_BAD): ("_refuse_bad", frozenset({S.CONTINUING, S.IDLE})),
    (S.CONTINUING, I.BLOCK_TOO_LONG): ("_refuse_too_long", frozenset({S.IDLE})),
    (S.CONTINUING, I.BLOCK_DUPLICATE): ("_ack_duplicate", frozenset({S.CONTINUING})),
    (S.CONTINUING, I.CONTROL): ("_deviation", frozenset({S.CONTINUING})),
    (S.CONTINUING, I.NOISE): ("_deviation", frozenset({S.CONTINUING})),
    (S.CONTINUING, I.BROKEN): ("_deviation", frozenset({S.CONTINUING})),
    (S.CONTINUING, I.TIMEOUT): ("_give_up", frozenset({S.IDLE})),
    # HOLDING_ACK: copies of the held block are served by its answer; new blocks wait
    (S.HOLDING_ACK, I.LOCAL_ACK): ("_release_ack", frozenset({S.IDLE})),
    (S.HOLDING_ACK, I.LOCAL_NAK): ("_release_nak", frozenset({S.IDLE, S.CONTINUING})),
    (S.HOLDING_ACK, I.TIMEOUT): ("_ignore", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.CONTROL): ("_deviation", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.NOISE): ("_deviation", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BROKEN): ("_deviation", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BLOCK_BAD): ("_drop_damaged", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BLOCK_DUPLICATE): ("_drop_copy", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BLOCK_LAST): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BLOCK_MORE): ("_defer", frozenset({S.HOLDING_ACK})),
    (S.HOLDING_ACK, I.BLOCK_TOO_LONG): ("_defer", frozenset({S.HOLDING_ACK})),
}

#: Inputs only local calls produce: a missing row for these raises.
LOCAL_INPUTS = frozenset({I.LOCAL_ACK, I.LOCAL_NAK})

_DEVIATION_KIND = {TokenKind.CONTROL: DeviationKind.LINK_CONTROL,
                   TokenKind.NOISE: DeviationKind.STRAY_BYTES,
                   TokenKind.BROKEN: DeviationKind.BROKEN_BLOCK}


@dataclass(frozen=True, slots=True)
class AuConfig:
    """Per-analyzer switches of the host end.

    Attributes:
        with_bcc: a BCC byte follows every ETX and ETB (the analyzer's menu
            setting); it is checked and a mismatch answered NAK.
        manual_ack: hold the ACK of each complete text (except ``immediate``
            ones) until :meth:`AuLink.acknowledge`.
        immediate: distinction codes acknowledged at once even in manual-ack mode.
        receive_timeout: seconds without a byte before a block or text in
            progress is given up.
        max_text: most text bytes of one text (all its blocks); a block that
            would go beyond is answered NAK and the text given up.
        max_attempts: NAKs in a row (bad BCC, refused by the owner) after which
            a text in progress is given up, as the analyzer has stopped trying
            (1 + the analyzer's 3 retries).
    """

    with_bcc: bool = True
    manual_ack: bool = False
    immediate: frozenset[str] = IMMEDIATE
    receive_timeout: float = 30.0
    max_text: int = 1 << 20
    max_attempts: int = 4


class AuLink:
    """The host end of one AU online link (a serial line or a TCP connection), sans-IO.

    Feed received bytes with :meth:`receive_data`, fire :meth:`handle_timer`
    at :meth:`get_timer`, answer held texts with :meth:`acknowledge` or
    :meth:`reject`, and after each call drain :meth:`data_to_send` and
    :meth:`events`.
    """

    def __init__(self, config: AuConfig | None = None) -> None:
        self.config = config or AuConfig()
        self.state = AuState.IDLE
        self._scanner = BlockScanner(with_bcc=self.config.with_bcc,
                                     max_block=self.config.max_text)
        self._out = bytearray()
        self._events: list[Event] = []
        self._last_rx = 0.0
        self._blocks: list[Token] = []  # accepted blocks of the text in progress (or held)
        self._last_block = b""  # the block acknowledged last
        self._last_text_blocks = 0  # blocks of the text completed last
        self._refusals = 0  # NAKs in a row of the text in progress
        self._deferred: list[Token] = []  # new blocks received while an answer is held
        self._token: Token | None = None
        self._actions: dict[tuple[AuState, AuInput],
                            tuple[Callable[[float], AuState], frozenset[AuState]]] = {
            key: (getattr(self, method), allowed)
            for key, (method, allowed) in TRANSITIONS.items()}

    # ------------------------------------------------------------------ API

    def receive_data(self, data: bytes, now: float) -> None:
        """Process bytes received from the analyzer (any number, split anywhere)."""
        if data:
            self._last_rx = now
        for token in self._scanner.feed(data):
            self._process(token, now)

    def acknowledge(self, now: float) -> None:
        """ACK the held text (it is safe now).

        Raises:
            LocalProtocolError: no text is waiting for its answer.
        """
        self._dispatch(I.LOCAL_ACK, now)
        self._replay_deferred(now)

    def reject(self, now: float) -> None:
        """NAK the held text's last block (it could not be kept); the analyzer sends it again.

        Raises:
            LocalProtocolError: no text is waiting for its answer.
        """
        self._dispatch(I.LOCAL_NAK, now)
        self._replay_deferred(now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or None."""
        if self.state is S.HOLDING_ACK:
            return None
        if self.state is S.CONTINUING or self._scanner.in_block:
            return self._last_rx + self.config.receive_timeout
        return None

    def handle_timer(self, now: float) -> None:
        """Fire the receive timer if it is due (calling it early is harmless)."""
        due = self.get_timer()
        if due is None or now < due:
            return
        for token in self._scanner.reset("no byte within the receive timeout"):
            self._process(token, now)
        self._dispatch(I.TIMEOUT, now)

    def connection_lost(self, now: float) -> None:
        """The transport closed: a text in progress is given up (its blocks handed out)."""
        for token in self._scanner.reset("connection lost"):
            self._events.append(self._deviation_of(token))
        if self.state is S.CONTINUING:
            self._abort(AbortReason.CONNECTION_LOST)
        self._blocks = []
        self._deferred.clear()
        self.state = S.IDLE

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the analyzer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> list[Event]:
        """Return and clear the events produced since the last call."""
        out = self._events
        self._events = []
        return out

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, inp: AuInput, now: float, token: Token | None = None) -> None:
        row = self._actions.get((self.state, inp))
        if row is None:  # only local inputs lack rows (checked by the tests)
            raise LocalProtocolError(f"{inp.value} is not allowed in state {self.state.value}")
        action, allowed = row
        self._token = token
        new_state = action(now)
        if new_state not in allowed:  # a bug in this file, never a peer fault
            raise RuntimeError(f"{TRANSITIONS[self.state, inp][0]} chose {new_state} "
                               f"outside {allowed}")
        self.state = new_state

    def _process(self, token: Token, now: float) -> None:
        self._dispatch(self._classify(token), now, token)

    def _replay_deferred(self, now: float) -> None:
        while self._deferred and self.state is not S.HOLDING_ACK:
            self._process(self._deferred.pop(0), now)

    def _classify(self, token: Token) -> AuInput:
        if token.kind is TokenKind.CONTROL:
            return I.CONTROL
        if token.kind is TokenKind.NOISE:
            return I.NOISE
        if token.kind is TokenKind.BROKEN:
            return I.BROKEN
        if token.kind is TokenKind.OVERSIZE:
            return I.BLOCK_TOO_LONG
        if token.raw == self._last_block and (self.state is S.CONTINUING
                                              or self._last_text_blocks > 1):
            return I.BLOCK_DUPLICATE
        if not token.bcc_ok:
            return I.BLOCK_BAD
        if self._text_length() + len(token.text) > self.config.max_text:
            return I.BLOCK_TOO_LONG
        return I.BLOCK_LAST if token.final else I.BLOCK_MORE

    # -------------------------------------------------------------- actions

    def _ignore(self, now: float) -> AuState:
        return self.state

    def _defer(self, now: float) -> AuState:
        token = self._block_token()
        if token.raw == self._blocks[-1].raw:
            return self._drop_copy(now)
        self._deferred.append(token)  # a sender that did not wait: answered in turn
        return self.state

    def _drop_copy(self, now: float) -> AuState:
        # The analyzer's reply timer ran out and it sent the held block again: the one
        # held answer serves both (a second would be taken for its next block's).
        self._events.append(DuplicateBlock(self._block_token().offset))
        return self.state

    def _drop_damaged(self, now: float) -> AuState:
        # A bad BCC while an answer is held: most likely a damaged copy of the held
        # block; a NAK now would be taken for the held block's answer.
        token = self._block_token()
        self._events.append(Deviation(DeviationKind.BLOCK_WHILE_HELD, token.detail,
                                      token.offset))
        return self.state

    def _deviation(self, now: float) -> AuState:
        self._events.append(self._deviation_of(self._block_token()))
        return self.state

    def _continue(self, now: float) -> AuState:
        token = self._block_token()
        self._blocks.append(token)
        self._acked(token)
        self._events.append(BlockAccepted(token.offset, len(token.raw)))
        return S.CONTINUING

    def _complete(self, now: float) -> AuState:
        self._blocks.append(self._block_token())
        blocks = self._blocks
        text = b"".join(b.text for b in blocks)
        message = AuMessage(kind_of(text), b"".join(b.raw for b in blocks), text,
                            blocks[0].offset, len(blocks))
        held = self.config.manual_ack and message.kind not in self.config.immediate
        self._events.append(TextReceived(message, held))
        if held:
            return S.HOLDING_ACK
        self._text_done()
        return S.IDLE

    def _text_done(self) -> None:
        self._acked(self._blocks[-1])
        self._last_text_blocks = len(self._blocks)
        self._blocks = []

    def _acked(self, token: Token) -> None:
        self._out.append(ACK)
        self._last_block = token.raw
        self._refusals = 0

    def _refuse_bad(self, now: float) -> AuState:
        token = self._block_token()
        self._events.append(BlockRejected(BlockProblem.BAD_BCC, token.offset, token.detail))
        return self._refused()

    def _refused(self) -> AuState:
        """NAK; after ``max_attempts`` NAKs in a row the analyzer has given up the text."""
        self._out.append(NAK)
        self._refusals += 1
        if self._blocks and self._refusals >= self.config.max_attempts:
            self._abort(AbortReason.RETRIES_EXHAUSTED, f"{self._refusals} NAKs in a row")
            return S.IDLE
        return S.CONTINUING if self._blocks else S.IDLE

    def _refuse_too_long(self, now: float) -> AuState:
        token = self._block_token()
        detail = token.detail or (f"{self._text_length() + len(token.text)} text bytes, "
                                  f"limit {self.config.max_text}")
        self._events.append(BlockRejected(BlockProblem.TOO_LONG, token.offset, detail))
        self._out.append(NAK)
        self._blocks.append(token)
        self._abort(AbortReason.TOO_LONG, detail)
        return S.IDLE

    def _ack_duplicate(self, now: float) -> AuState:
        token = self._block_token()
        self._events.append(DuplicateBlock(token.offset))
        self._out.append(ACK)
        return self.state

    def _give_up(self, now: float) -> AuState:
        self._abort(AbortReason.RECEIVE_TIMEOUT)
        return S.IDLE

    def _release_ack(self, now: float) -> AuState:
        self._text_done()
        return S.IDLE

    def _release_nak(self, now: float) -> AuState:
        # The analyzer sends the last block again: the text continues from before it.
        self._blocks.pop()
        return self._refused()

    # -------------------------------------------------------------- helpers

    def _abort(self, reason: AbortReason, detail: str = "") -> None:
        if self._blocks:
            self._events.append(TextAborted(reason, b"".join(b.raw for b in self._blocks),
                                            self._blocks[0].offset, detail))
        self._blocks = []
        self._refusals = 0

    def _text_length(self) -> int:
        return sum(len(b.text) for b in self._blocks)

    def _block_token(self) -> Token:
        if self._token is None:  # only reachable through a bug in this file
            raise RuntimeError("peer action dispatched without a token")
        return self._token

    @staticmethod
    def _deviation_of(token: Token) -> Deviation:
        kind = _DEVIATION_KIND.get(token.kind, DeviationKind.STRAY_BYTES)
        detail = token.detail or (f"0x{token.raw[0]:02X}" if token.kind is TokenKind.CONTROL
                                  else f"{len(token.raw)} bytes")
        return Deviation(kind, detail, token.offset)
