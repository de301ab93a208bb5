"""Fault injection on the simulated analyzer's wire (pure).

A fault has a kind and a probability per opportunity, decided by a seeded
:class:`random.Random`, so ``--seed`` reproduces a run's faults:

``bad-checksum``
    ASTM only: a frame goes out with a wrong checksum (per frame sent). The
    gateway answers NAK and the link sends the frame again, at most six
    times (E1381); after that the transfer is abandoned and the message is
    tried again in a new session.
``lost-ack``
    The gateway's acknowledgement of a frame (ASTM) or of a message (HL7) is
    dropped on its way in, so the analyzer never sees it (per
    acknowledgement). ASTM: the sender's timer runs out, the analyzer sends
    EOT and sends the whole message again in a new session; when the lost
    ACK was the last frame's, the gateway already has the message and gets
    it twice (its store recognises the repeat). HL7: the analyzer waits
    for its ACK timeout and sends the same message (same MSH-10) again.
``drop``
    The connection is dropped in the middle of a frame or message (per frame
    or message sent): half of it is written, then the TCP connection is
    closed; the analyzer reconnects (or the gateway does, when it is the
    client) and sends the message again. On a serial line there is nothing
    to close: the rest of the frame is never sent, the analyzer's timer runs
    out and it ends with EOT, as when a cable is pulled in mid-frame.
``garbage``
    Line noise: 3 to 24 printable bytes (no control characters, no ``M``)
    written before an ENQ or a frame (ASTM) or before a message (HL7), per
    opportunity.

The cores below only transform bytes; the Twisted wrapper
(:class:`lis_gateway.sim.adapters.FaultWrapper`) puts them on a connection.
"""

from __future__ import annotations

import argparse
import enum
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lis_gateway.astm import constants as C
from lis_gateway.astm.frames import checksum
from lis_gateway.hl7.mllp import CR, FS, VT


class FaultKind(enum.Enum):
    """The faults the simulator can inject."""

    BAD_CHECKSUM = "bad-checksum"
    LOST_ACK = "lost-ack"
    DROP = "drop"
    GARBAGE = "garbage"


#: The probability of a ``--fault KIND`` given without one.
DEFAULT_PROBABILITY = 0.1
#: What line noise is made of: printable ASCII without ``M`` (so noise never
#: looks like the start of an HL7 message).
NOISE = bytes(b for b in range(0x21, 0x7F) if b != ord("M"))


def parse_fault(text: str) -> tuple[FaultKind, float]:
    """``KIND[:PROB]`` for argparse (``garbage``, ``lost-ack:0.3``).

    Raises:
        argparse.ArgumentTypeError: unknown kind, or a probability outside 0..1.
    """
    name, _, prob = text.partition(":")
    try:
        kind = FaultKind(name.strip())
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {known}") from None
    try:
        value = float(prob) if prob else DEFAULT_PROBABILITY
    except ValueError:
        raise argparse.ArgumentTypeError(f"probability {prob!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probability {value} is not between 0 and 1")
    return kind, value


@dataclass
class Decider:
    """Decides, opportunity by opportunity, whether a fault happens.

    Args:
        probabilities: per kind (absent kinds never happen).
        rng: the seeded random source (shared by every connection of a run).
    """

    probabilities: Mapping[FaultKind, float]
    rng: random.Random
    #: how many of each kind were injected so far
    counts: dict[FaultKind, int] = field(default_factory=dict)

    def fires(self, kind: FaultKind) -> bool:
        """Roll for ``kind``; count it when it fires."""
        p = self.probabilities.get(kind, 0.0)
        if p <= 0.0 or self.rng.random() >= p:
            return False
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return True

    def noise(self) -> bytes:
        """Some line noise."""
        return bytes(self.rng.choice(NOISE) for _ in range(self.rng.randint(3, 24)))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What to write for one write call, and whether to close the connection after."""

    data: bytes
    close: bool = False


_FRAME = re.compile(rb"\x02[^\x02\x03\x17]*[\x03\x17](?:[0-9A-Fa-f]{2})?\r\n", re.S)


class AstmFaults:
    """Faults on one E1381 connection of the analyzer.

    Args:
        decider: the run's decider.
        can_close: the transport can be closed (TCP); on a serial line a drop
            only cuts the frame short.
    """

    def __init__(self, decider: Decider, *, can_close: bool) -> None:
        self._decider = decider
        self._can_close = can_close
        self._awaiting_reply = False  # we wrote a frame and wait for its ACK/NAK/EOT
        self._closed = False
        self.injected: list[FaultKind] = []

    def _fires(self, kind: FaultKind) -> bool:
        if self._decider.fires(kind):
            self.injected.append(kind)
            return True
        return False

    def outgoing(self, data: bytes) -> Outgoing:
        """What goes on the wire instead of ``data`` (one write of the link)."""
        if self._closed:
            return Outgoing(b"")
        out = bytearray()
        pos = 0
        for m in _FRAME.finditer(data):
            out += self._before(data[pos:m.start()])
            frame = m.group()
            if self._fires(FaultKind.GARBAGE):
                out += self._decider.noise()
            if self._fires(FaultKind.DROP):
                out += frame[:max(2, len(frame) // 2)]
                self._closed = self._can_close
                return Outgoing(bytes(out), close=self._can_close)
            if self._fires(FaultKind.BAD_CHECKSUM):
                frame = _corrupt_checksum(frame)
            out += frame
            self._awaiting_reply = True
            pos = m.end()
        out += self._before(data[pos:])
        return Outgoing(bytes(out))

    def _before(self, data: bytes) -> bytes:
        """Control bytes between frames: noise may come before an ENQ."""
        if C.ENQ in data and self._fires(FaultKind.GARBAGE):
            i = data.index(C.ENQ)
            return data[:i] + self._decider.noise() + data[i:]
        return data

    def incoming(self, data: bytes) -> bytes:
        """What the link is given instead of ``data`` (a frame's ACK may be lost)."""
        if not self._awaiting_reply:
            return data
        out = bytearray()
        for b in data:
            if self._awaiting_reply and b in (C.ACK_B, C.NAK_B, C.EOT_B):
                self._awaiting_reply = False
                if b == C.ACK_B and self._fires(FaultKind.LOST_ACK):
                    continue
            out.append(b)
        return bytes(out)


def _corrupt_checksum(frame: bytes) -> bytes:
    """The frame with checksum characters that do not match (one more, mod 256)."""
    end = max(frame.rfind(C.ETX), frame.rfind(C.ETB))
    good = checksum(frame[1:end + 1])
    wrong = f"{(int(good, 16) + 1) % 256:02X}".encode()
    return frame[:end + 1] + wrong + frame[end + 3:]


class MllpFaults:
    """Faults on one MLLP connection of the analyzer (TCP, so a drop closes it).

    Args:
        decider: the run's decider.
    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider
        self._closed = False
        self._buffer = bytearray()  # incoming bytes of a block not complete yet
        self.injected: list[FaultKind] = []

    def _fires(self, kind: FaultKind) -> bool:
        if self._decider.fires(kind):
            self.injected.append(kind)
            return True
        return False

    def outgoing(self, data: bytes) -> Outgoing:
        """What goes on the wire instead of ``data`` (one framed message)."""
        if self._closed:
            return Outgoing(b"")
        if VT not in data:
            return Outgoing(data)
        noise = self._decider.noise() if self._fires(FaultKind.GARBAGE) else b""
        if self._fires(FaultKind.DROP):
            self._closed = True
            return Outgoing(noise + data[:max(2, len(data) // 2)], close=True)
        return Outgoing(noise + data)

    def incoming(self, data: bytes) -> bytes:
        """What the link is given instead of ``data`` (a whole answer may be lost)."""
        self._buffer += data
        out = bytearray()
        while self._buffer:
            start = self._buffer.find(VT)
            if start < 0:
                out += self._buffer
                self._buffer.clear()
                break
            out += self._buffer[:start]
            del self._buffer[:start]
            end = self._buffer.find(FS + CR)
            if end < 0:
                break  # the rest of the block has not come yet
            block = bytes(self._buffer[:end + 2])
            del self._buffer[:end + 2]
            if not self._fires(FaultKind.LOST_ACK):
                out += block
        return bytes(out)
