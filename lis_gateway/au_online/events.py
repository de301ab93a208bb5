"""Events emitted by the AU online link cores (:mod:`.link`, :mod:`.sender`).

Every peer fault becomes one of these; the cores never raise for what the
other side sends. Offsets count bytes received on the link since it was made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LocalProtocolError(Exception):
    """The owner called the core out of order (a bug on our side, never the peer's)."""


class AbortReason(enum.Enum):
    """Why a text in progress was given up."""

    RECEIVE_TIMEOUT = "receive-timeout"  #: no byte for the receive timeout in mid-text
    RETRIES_EXHAUSTED = "retries-exhausted"  #: a block was refused as often as the sender tries
    TOO_LONG = "too-long"  #: the text went over the size limit (answered NAK)
    CONNECTION_LOST = "connection-lost"  #: the transport went away in mid-text
    REPLY_TIMEOUT = "reply-timeout"  #: sender: no ACK or NAK in time, as often as it tries


class BlockProblem(enum.Enum):
    """Why a block was answered NAK."""

    BAD_BCC = "bcc"
    TOO_LONG = "too-long"


class DeviationKind(enum.Enum):
    """What the link tolerated without refusing anything (recorded for people)."""

    LINK_CONTROL = "link-control"  #: ENQ, EOT, ACK or NAK from the analyzer (not used here)
    STRAY_BYTES = "stray-bytes"  #: bytes outside any block
    BROKEN_BLOCK = "broken-block"  #: a block cut short; its bytes are dropped
    BLOCK_WHILE_HELD = "block-while-held"  #: a bad BCC while an answer is held: dropped
    STRAY_REPLY = "stray-reply"  #: sender: a byte other than ACK or NAK, or a reply unasked


@dataclass(frozen=True, slots=True)
class AuMessage:
    """One complete text as the host received it.

    Attributes:
        kind: the distinction code (first two characters).
        raw: every accepted block exactly as received (STX ... ETX|ETB [BCC]),
            in order: what is stored, hashed and decoded again later.
        text: the text without framing (the blocks' texts joined).
        offset: where its first block's STX was received.
        blocks: how many blocks carried it.
    """

    kind: str
    raw: bytes
    text: bytes
    offset: int
    blocks: int = 1


@dataclass(frozen=True, slots=True)
class TextReceived:
    """A text is complete.

    ``held``: its ACK waits for :meth:`AuLink.acknowledge` (or NAK through
    :meth:`AuLink.reject`); else it was acknowledged already.
    """

    message: AuMessage
    held: bool


@dataclass(frozen=True, slots=True)
class BlockAccepted:
    """A block ending with ETB passed its checks and was answered ACK."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class BlockRejected:
    """A block was answered NAK (the analyzer sends it again)."""

    problem: BlockProblem
    offset: int
    detail: str


@dataclass(frozen=True, slots=True)
class DuplicateBlock:
    """The block acknowledged last came again (our ACK was lost): ACKed, discarded.

    A copy of a block whose answer is held (the owner is slow) is discarded
    too; the held answer serves it.
    """

    offset: int


@dataclass(frozen=True, slots=True)
class TextAborted:
    """A text in progress was given up; ``raw`` holds its accepted blocks (kept, not used)."""

    reason: AbortReason
    raw: bytes
    offset: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Deviation:
    """Something off that the link tolerated; recorded for the technician."""

    kind: DeviationKind
    detail: str
    offset: int


@dataclass(frozen=True, slots=True)
class TextSent:
    """Sender: the host acknowledged the last block of a text."""

    text: bytes


@dataclass(frozen=True, slots=True)
class TextFailed:
    """Sender: a text was not delivered; handed back, never dropped."""

    text: bytes
    reason: AbortReason


Event = (TextReceived | BlockAccepted | BlockRejected | DuplicateBlock | TextAborted
         | Deviation | TextSent | TextFailed)
