"""Events emitted by the E1381 link core (:mod:`lis_gateway.astm.link`).

Every peer fault becomes one of these; the core never raises for what the
other side sends. Offsets count bytes received on the link since it was made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .frames import FrameProblem


class AbortReason(enum.Enum):
    """Why a transfer ended without completing."""

    RECEIVE_TIMEOUT = "receive-timeout"  #: E1381: no frame or EOT within the receive timer
    REPLY_TIMEOUT = "reply-timeout"  #: E1381: no reply to our ENQ or frame within 15 s
    RETRIES_EXHAUSTED = "retries-exhausted"  #: a frame was refused 6 times
    BID_REFUSED = "bid-refused"  #: the peer answered our ENQ with NAK 6 times
    PEER_RESTARTED = "peer-restarted"  #: the peer sent ENQ in the middle of its transfer
    CONNECTION_LOST = "connection-lost"  #: the transport went away
    EOT_MID_MESSAGE = "eot-mid-message"  #: the peer ended with EOT after an ETB frame


class DeviationKind(enum.Enum):
    """Departures from E1381 that the link tolerated (recorded, not refused)."""

    FRAME_TOO_LONG = "frame-too-long"  #: over 247 characters (real analyzers send up to ~27 kB)
    LINE_ENDINGS_REPAIRED = "line-endings-repaired"  #: CR/LF damage undone to verify checksum
    CHECKSUM_IGNORED = "checksum-ignored"  #: bad checksum accepted (log-only mode)
    FRAME_NUMBER_IGNORED = "frame-number-ignored"  #: unexpected FN accepted (lenient mode)
    RESTRICTED_CHARACTER = "restricted-character"  #: a control character inside frame text
    DATA_IGNORED = "data-ignored"  #: bytes that mean nothing in the current state
    BROKEN_FRAME = "broken-frame"  #: a frame cut short or over the hard size limit
    NO_ENQ = "no-enq"  #: a frame arrived without an ENQ first (enq-optional dialect)
    REPEATED_ENQ = "repeated-enq"  #: ENQ while already receiving


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """The peer won the line (we answered its ENQ with ACK)."""

    offset: int


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer sent ENQ and its answer waits for the owner (manual-enq mode).

    The owner answers with :meth:`LinkConnection.accept_transfer` (ACK) or
    :meth:`LinkConnection.refuse_transfer` (NAK, "busy", E1381 8.2.5).
    """

    offset: int


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """We answered the peer's ENQ with NAK (busy); it bids again 10 s or more later.

    ``cause`` is ``"busy"`` (the owner refused, or :meth:`LinkConnection.set_busy`)
    or ``"no-decision"`` (the owner did not answer within the reply timer).
    """

    offset: int
    cause: str = "busy"


@dataclass(frozen=True, slots=True)
class FrameAccepted:
    """A frame passed its checks; its text belongs to the current transfer.

    Attributes:
        fn: frame number as sent.
        text: frame text (checksum verified on the raw bytes).
        final: ``True`` if the frame ended with ETX (end of a low-level message).
        offset: offset of its STX.
        held: the ACK is held until :meth:`LinkConnection.acknowledge` (manual-ack mode).
    """

    fn: int
    text: bytes
    final: bool
    offset: int
    held: bool = False


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame failed its checks and was answered with NAK."""

    problem: FrameProblem
    fn: int
    offset: int
    detail: str


@dataclass(frozen=True, slots=True)
class DuplicateFrame:
    """The previous frame came again (our ACK was lost): ACKed, text discarded."""

    fn: int
    offset: int


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """The peer ended its transfer normally with EOT."""

    offset: int


@dataclass(frozen=True, slots=True)
class TransferAborted:
    """A transfer (either direction) ended abnormally. Partial text is void."""

    reason: AbortReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MessageSent:
    """The peer acknowledged the last frame of a message we queued."""

    message: bytes


@dataclass(frozen=True, slots=True)
class SendFailed:
    """Messages we queued were not delivered; they are handed back, never dropped."""

    messages: tuple[bytes, ...]
    reason: AbortReason


@dataclass(frozen=True, slots=True)
class BidDeferred:
    """We did not get the line now and will bid again at ``retry_at``.

    ``cause`` is ``"busy"`` (peer NAKed our ENQ), ``"no-reply"``,
    ``"contention"`` (both sent ENQ) or ``"interrupt"`` (the receiver asked us to stop).
    """

    cause: str
    attempt: int
    retry_at: float


@dataclass(frozen=True, slots=True)
class Deviation:
    """Something off-standard that the link accepted; recorded for the technician."""

    kind: DeviationKind
    detail: str
    offset: int


@dataclass(frozen=True, slots=True)
class UnexpectedInput:
    """An input the state table has no row for; the link went back to NEUTRAL."""

    state: str
    input: str


Event = (TransferStarted | TransferRequested | TransferRefused | FrameAccepted | FrameRejected
         | DuplicateFrame | TransferEnded | TransferAborted | MessageSent | SendFailed
         | BidDeferred | Deviation | UnexpectedInput)
