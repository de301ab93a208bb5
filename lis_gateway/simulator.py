"""A simulated analyzer, for the demo, tests and bench work.

It plays the instrument end of an E1381 link: an
:class:`~lis_gateway.adapters.astm_protocol.AstmLinkProtocol` running
``LinkConnection(LinkConfig(role=Role.INSTRUMENT))``, sending realistic
chemistry and haematology messages built with the E1394 record dataclasses.
All patients are made up. The haematology message carries an interpretive
comment longer than 240 characters, so it goes out as ETB frames.

Transports: over TCP the simulator is a client protocol (see
:func:`lis_gateway.adapters.tcp.make_client_service`); over "serial" it
drives the master side of a pseudo-terminal (:func:`open_pty`,
:class:`FdTransport`) while the gateway opens the slave path as a serial
device.

The demo and many tests use these two generic messages; ``lis-gateway
simulate`` (:mod:`lis_gateway.sim`) plays each driver family in its own
record style, with host queries and faults.
"""

from __future__ import annotations

import itertools
import os
import tty
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet import abstract, fdesc, main
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from lis_gateway.adapters.astm_protocol import AstmLinkProtocol
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.codec import encode_message
from lis_gateway.astm.delimiters import DEFAULT
from lis_gateway.astm.events import AbortReason
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.astm.records import (
    CommentRecord,
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
)
from lis_gateway.hl7.message import Hl7Message

#: Made-up patients: (last name, first name, birth date, sex).
PATIENTS = (
    ("DOE", "JANE", "19800214", "F"),
    ("ROE", "RICHARD", "19571103", "M"),
    ("MUSTERMANN", "ERIKA", "19640812", "F"),
    ("BLOGGS", "JOE", "19911230", "M"),
)

#: Chemistry panel: (code, base value, unit, reference range, flag).
CHEMISTRY = (
    ("GLU", 5.4, "mmol/L", "3.9-6.1", "N"),
    ("CREA", 88.0, "umol/L", "59-104", "N"),
    ("UREA", 6.1, "mmol/L", "2.5-7.8", "N"),
    ("ALT", 52.0, "U/L", "0-41", "H"),
    ("NA", 139.0, "mmol/L", "136-145", "N"),
    ("K", 5.6, "mmol/L", "3.5-5.1", "H"),
)

#: Haematology panel: (code, base value, unit, reference range, flag).
HAEMATOLOGY = (
    ("WBC", 7.2, "10^9/L", "4.0-10.0", "N"),
    ("RBC", 4.61, "10^12/L", "4.20-5.40", "N"),
    ("HGB", 118.0, "g/L", "120-160", "L"),
    ("HCT", 0.36, "L/L", "0.37-0.47", "L"),
    ("MCV", 78.1, "fL", "80-100", "L"),
    ("PLT", 254.0, "10^9/L", "150-400", "N"),
    ("NEUT%", 61.3, "%", "40-75", "N"),
    ("LYMPH%", 28.4, "%", "20-45", "N"),
)

SMEAR_COMMENT = (
    "Microcytic hypochromic picture with mild anisocytosis and occasional pencil cells; "
    "platelet count confirmed on smear, no clumps seen; white cell differential within "
    "normal limits, no blasts or immature granulocytes observed. Suggest iron studies "
    "(ferritin, transferrin saturation) and reticulocyte count if clinically indicated."
)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S")


def _value(base: float, seq: int) -> str:
    """A value that wanders a little with the sequence number (deterministic)."""
    decimals = 2 if base < 10 else 1
    return f"{base * (1 + ((seq * 7) % 11 - 5) / 100):.{decimals}f}"


def _patient_order(seq: int, sample: str, when: datetime, specimen: str,
                   codes: tuple[str, ...]) -> list[Record]:
    last, first, dob, sex = PATIENTS[seq % len(PATIENTS)]
    tests = DEFAULT.repeat.join(f"^^^{code}" for code in codes)
    return [
        PatientRecord(sequence="1", practice_patient_id=f"P{100200 + seq}",
                      laboratory_patient_id=f"L{300400 + seq}", name=f"{last}^{first}",
                      birthdate=dob, sex=sex),
        OrderRecord(sequence="1", specimen_id=sample, universal_test_id=tests, priority="R",
                    collected_at=_stamp(when), action_code="N", specimen_descriptor=specimen,
                    report_type="F"),
    ]


def _results(panel: tuple[tuple[str, float, str, str, str], ...], seq: int, when: datetime,
             instrument: str, test_id: Callable[[str], str]) -> list[Record]:
    return [
        ResultRecord(sequence=str(i), universal_test_id=test_id(code),
                     value=_value(base, seq), units=DEFAULT.escape_text(unit),
                     reference_range=ref, abnormal_flags=flag, status="F",
                     completed_at=_stamp(when), instrument_id=instrument)
        for i, (code, base, unit, ref, flag) in enumerate(panel, start=1)
    ]


def _header(when: datetime, model: str) -> HeaderRecord:
    return HeaderRecord(sender_id=f"{model}^1.0^SIM0001", receiver_id="LIS", processing_id="P",
                        version="LIS2-A2", timestamp=_stamp(when))


def chemistry_message(seq: int, when: datetime) -> bytes:
    """A chemistry panel (H, P, O, six R, L) for made-up patient ``seq``.

    Args:
        seq: message number; picks the patient and nudges the values.
        when: collection and result time written into the records.

    Returns:
        E1394 text, each record ending in CR; sample id ``C<240000 + seq>``.
    """
    sample = f"C{240000 + seq}"
    codes = tuple(c[0] for c in CHEMISTRY)
    records: list[Record] = [_header(when, "SIM-CHEM"),
                             *_patient_order(seq, sample, when, "Serum", codes),
                             *_results(CHEMISTRY, seq, when, "SIM-CHEM^1", lambda c: f"^^^{c}"),
                             TerminatorRecord(sequence="1", termination_code="N")]
    return encode_message(records)


def haematology_message(seq: int, when: datetime) -> bytes:
    """A blood count (H, P, O, eight R, a long C, L) for made-up patient ``seq``.

    The comment record is longer than 240 characters, so E1381 sends it as
    ETB frames followed by an ETX frame.

    Returns:
        E1394 text, each record ending in CR; sample id ``H<250000 + seq>``.
    """
    sample = f"H{250000 + seq}"
    codes = tuple(c[0] for c in HAEMATOLOGY)
    records: list[Record] = [_header(when, "SIM-HEME"),
                             *_patient_order(seq, sample, when, "Whole blood", codes),
                             *_results(HAEMATOLOGY, seq, when, "SIM-HEME^1",
                                       lambda c: f"^^^^{c}^1"),
                             CommentRecord(sequence="1", source="I", text=SMEAR_COMMENT,
                                           comment_type="G"),
                             TerminatorRecord(sequence="1", termination_code="N")]
    return encode_message(records)


#: The messages a simulator sends in turn.
MESSAGE_BUILDERS: tuple[Callable[[int, datetime], bytes], ...] = (
    chemistry_message, haematology_message)


class SimulatedAnalyzer:
    """A fake analyzer sending one message every ``interval`` seconds.

    It is the sink of its own instrument-role protocol (it counts what the
    gateway acknowledged) and builds that protocol for whichever transport
    carries it.

    Args:
        name: used in logs.
        clock: time source for the link timers and the send loop.
        utcnow: wall-clock time written into the records.
        interval: seconds between messages.
        log: a logger; one bound to ``simulator=name`` when None.
    """

    def __init__(self, name: str, clock: IReactorTime, utcnow: Callable[[], datetime], *,
                 interval: float = 5.0, log: FilteringBoundLogger | None = None) -> None:
        self.name = name
        self._clock = clock
        self._utcnow = utcnow
        self.interval = interval
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.simulator").bind(simulator=name))
        self._seq = itertools.count(1)
        self._loop: LoopingCall | None = None
        self.protocol: AstmLinkProtocol | None = None
        self.sent: list[bytes] = []
        self.failed: list[bytes] = []

    def build_protocol(self, session: str = "1") -> AstmLinkProtocol:
        """A fresh instrument-role link protocol (also usable as a ProtocolBuilder)."""
        self.protocol = AstmLinkProtocol(
            LinkConfig(role=Role.INSTRUMENT), self._clock, "latin-1", self,
            log=self._log.bind(session=session))
        return self.protocol

    def send_next(self) -> bytes | None:
        """Queue the next message if connected; return it (None when not connected)."""
        if self.protocol is None or not self.protocol.is_connected:
            self._log.info("simulator-not-connected")
            return None
        seq = next(self._seq)
        message = MESSAGE_BUILDERS[(seq - 1) % len(MESSAGE_BUILDERS)](seq, self._utcnow())
        self.protocol.send_message(message)
        return message

    def start(self) -> None:
        """Send a message every ``interval`` seconds, the first after one interval."""
        loop = LoopingCall(self.send_next)
        loop.clock = self._clock
        loop.start(self.interval, now=False).addErrback(self._loop_failed)
        self._loop = loop

    def stop(self) -> None:
        """Stop sending (messages already queued stay queued)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _loop_failed(self, failure: Failure) -> None:
        self._log.error("simulator-failed", error=failure.getErrorMessage())

    # Sink (the gateway sends nothing in the demo; if it does, take it and ACK).

    def message_received(self, msg: AstmMessage | Hl7Message) -> Deferred[object] | None:
        """Ignore messages from the gateway (host queries are not simulated)."""
        self._log.info("simulator-received", length=len(msg.raw))
        return None

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Ignore incomplete text from the gateway."""

    def message_sent(self, message: bytes) -> None:
        """The gateway acknowledged a whole message."""
        self.sent.append(message)

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """The gateway did not take these messages; the simulator drops them."""
        self.failed.extend(messages)
        self._log.warning("simulator-send-failed", messages=len(messages),
                          reason=reason.value)


@dataclass(frozen=True, slots=True)
class Pty:
    """A pseudo-terminal pair in raw mode; ``path`` is the slave device to open."""

    master: int
    slave: int
    path: str

    def close(self) -> None:
        """Close both ends (stop any :class:`FdTransport` on the master first)."""
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError as exc:  # already closed: nothing left to release
                structlog.get_logger("lis_gateway.simulator").debug(
                    "pty-close", error=exc.strerror)


def open_pty() -> Pty:
    """Open a pseudo-terminal in raw mode (no echo, no CR/LF translation).

    The slave stays open in this process so the master never reads EIO while
    the gateway closes and reopens the slave path.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    return Pty(master, slave, os.ttyname(slave))


class FdTransport(abstract.FileDescriptor):
    """A transport reading and writing one file descriptor (a pty master).

    The descriptor is not closed here: its owner (:class:`Pty`) closes it
    after :meth:`stop`.

    Args:
        fd: the descriptor (made non-blocking).
        protocol: connected at once.
        reactor: provides IReactorFDSet.
    """

    connected = 1

    def __init__(self, fd: int, protocol: Protocol, reactor: IReactorFDSet) -> None:
        abstract.FileDescriptor.__init__(self, reactor)
        self._fd = fd
        fdesc.setNonBlocking(fd)
        self.protocol = protocol
        protocol.makeConnection(self)
        self.startReading()

    def fileno(self) -> int:
        """The descriptor."""
        return self._fd

    def doRead(self) -> object:
        """Hand what is readable to the protocol."""
        return fdesc.readFromFD(self._fd, self.protocol.dataReceived)

    def writeSomeData(self, data: bytes) -> int | BaseException:
        """Write what the descriptor takes now."""
        return fdesc.writeToFD(self._fd, data)

    def stop(self) -> None:
        """Stop at once: unregister from the reactor and tell the protocol."""
        if self.connected:
            self.stopReading()
            self.stopWriting()
            self.connectionLost(Failure(main.CONNECTION_DONE))

    def connectionLost(self, reason: Failure) -> None:
        """Unregister and tell the protocol."""
        abstract.FileDescriptor.connectionLost(self, reason)
        self.protocol.connectionLost(reason)
