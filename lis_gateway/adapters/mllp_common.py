"""What the MLLP protocols share: configuration, control IDs, wall time, the connection shell.

The rules shared with :mod:`lis_gateway.adapters.astm_protocol`:

* Every byte goes to the wire recorder before anything else looks at it
  (received bytes first thing in ``dataReceived``, sent bytes just before
  ``transport.write``).
* One ``IDelayedCall`` is re-armed after every turn at the nearest deadline
  (the framer's missing-FS silence, and for the sender the ACK timeout).
* Logs carry message types, control ID lengths, segment counts, offsets and
  framing deviations, never field contents.
"""

from __future__ import annotations

import codecs
import itertools
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from structlog.typing import FilteringBoundLogger
from twisted.internet.interfaces import (
    IReactorTime,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from lis_gateway.adapters.recorded import RecordedProtocol
from lis_gateway.astm.assembler import IncompleteTransmission
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.hl7.mllp import (
    MAX_MESSAGE,
    MISSING_FS_TIMEOUT,
    BlockIncomplete,
    MllpEvent,
    MllpFramer,
    StrayBytes,
)
from lis_gateway.wire import Recorder

#: Seconds the HIS has to acknowledge a message.
ACK_TIMEOUT = 30.0
#: Received messages waiting for the sink beyond which reading pauses.
MAX_QUEUED = 64
#: HL7 table 0357 codes used here.
SEGMENT_SEQUENCE_ERROR, UNSUPPORTED_MESSAGE_TYPE, INTERNAL_ERROR = "100", "200", "207"
#: The HL7 table 0357 code of the AR for a block over the size limit. The table
#: (v2.5.1) has no code about size: 100-103 are segment and field errors
#: (sequence, required field missing, data type, table value) and 200-206 name
#: other refusals (unsupported type, event, processing ID, version; keys; a
#: locked record). 207 "application internal error" is its catch-all for errors
#: not covered by other codes; with MSA-1 AR (do not send again as is; AE would
#: ask for a resend) and "message too large" in MSA-3 and ERR, the analyzer and
#: its operator see why.
TOO_LARGE_ERROR = INTERNAL_ERROR
BLANK = b"\r\n\x00 \t"

# ------------------------------------------------------------------ configuration


@dataclass(frozen=True, slots=True)
class MllpConfig:
    """How one analyzer link reads HL7.

    Attributes:
        encoding_override: forces the character set (wins over MSH-18).
        default_encoding: used when MSH-18 is absent or unknown.
        always_ack: answer even when MSH-15/16 say NE.
        missing_fs_timeout: silence that ends a block sent without FS.
        max_message: larger blocks are dropped and reported.
    """

    encoding_override: str | None = None
    default_encoding: str = "utf-8"
    always_ack: bool = True
    missing_fs_timeout: float = MISSING_FS_TIMEOUT
    max_message: int = MAX_MESSAGE

    def __post_init__(self) -> None:
        for name in (self.encoding_override, self.default_encoding):
            if name:
                codecs.lookup(name)  # LookupError now, not on the first message


class Hl7Dialect(typing.Protocol):
    """The HL7 switches of a driver (``drivers.DriverSpec`` has them)."""

    @property
    def hl7_encoding(self) -> str | None: ...
    @property
    def hl7_default_encoding(self) -> str: ...
    @property
    def hl7_always_ack(self) -> bool: ...
    @property
    def missing_fs_timeout(self) -> float: ...


def mllp_config(dialect: Hl7Dialect) -> MllpConfig:
    """The link configuration of a driver's HL7 dialect."""
    return MllpConfig(encoding_override=dialect.hl7_encoding,
                      default_encoding=dialect.hl7_default_encoding,
                      always_ack=dialect.hl7_always_ack,
                      missing_fs_timeout=dialect.missing_fs_timeout)


class ControlIds:
    """MSH-10 values for the ACKs and messages the gateway sends: prefix and counter.

    Args:
        prefix: distinguishes processes (see :meth:`starting_at`).
        start: the first number.
    """

    def __init__(self, prefix: str, start: int = 1) -> None:
        self.prefix = prefix
        self._numbers = itertools.count(start)

    @classmethod
    def starting_at(cls, t: float) -> ControlIds:
        """IDs prefixed with the start time in base 36 (``G`` + 6 characters + counter)."""
        n, digits = int(t), ""
        while True:
            n, r = divmod(n, 36)
            digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
            if not n:
                return cls(f"G{digits}-")

    def __call__(self) -> str:
        """The next control ID."""
        return f"{self.prefix}{next(self._numbers)}"


def utcnow_from(clock: IReactorTime) -> Callable[[], datetime]:
    """Wall-clock time read from ``clock`` (local time with its UTC offset, for MSH-7)."""
    return lambda: datetime.fromtimestamp(clock.seconds(), UTC).astimezone()


# ------------------------------------------------------------------ shared shell


class MllpConnection(RecordedProtocol):
    """The recorded shell plus the MLLP framer, whose silence deadline drives the timer."""

    def __init__(self, clock: IReactorTime, framer: MllpFramer, recorder: Recorder | None,
                 log: FilteringBoundLogger | None) -> None:
        super().__init__(clock, recorder, log, "mllp")
        self._framer = framer

    def dataReceived(self, data: bytes) -> None:
        """Record the bytes, frame them, route the blocks, re-arm the timer."""
        now = self._record_received(data)
        self._route(self._framer.receive_data(data, now))
        self._rearm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Report what was left half-received, then close the shell."""
        self._closed = True
        self._route(self._framer.connection_lost())
        self._lost()
        super().connectionLost(reason)

    # The subclass parts: route framer events, its own deadline, connection loss.

    def _route(self, events: Iterable[MllpEvent]) -> None:
        raise NotImplementedError

    def _deadline(self) -> float | None:
        return self._framer.get_timer()

    def _fire_timers(self, now: float) -> None:
        self._route(self._framer.handle_timer(now))

    def _lost(self) -> None:
        """The connection is gone (called before the timer stops)."""

    def _log_block_trouble(self, event: BlockIncomplete | StrayBytes) -> IncompleteTransmission:
        if isinstance(event, BlockIncomplete):
            self._log.warning("incomplete-message", offset=event.offset,
                              length=len(event.data), reason=event.reason)
            return IncompleteTransmission(event.data, event.reason, event.offset)
        self._log.info("stray-bytes", offset=event.offset, length=len(event.data))
        return IncompleteTransmission(event.data, "bytes outside any MLLP block", event.offset)


def message_shape(msg: Hl7Message) -> dict[str, object]:
    """Loggable facts about a message: no field contents beyond its type."""
    return {"message_type": msg.message_type[:20], "control_id_length": len(msg.control_id),
            "segments": len(msg.segments), "problems": len(msg.problems)}


