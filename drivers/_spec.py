"""DriverSpec: what one analyzer family needs, as data plus small pure hooks.

A driver module defines one :class:`DriverSpec`; :mod:`drivers` lists them
all. The core (``lis_gateway.astm``) never imports drivers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.astm.link import LinkConfig
from lis_gateway.astm.records import OrderRecord, PatientRecord, ResultRecord


class Framing(enum.Enum):
    """How records travel on the wire."""

    E1381 = "e1381"  #: ENQ / frames with checksums / EOT (serial or TCP)
    BARE = "bare"  #: E1394 records with no E1381 framing (TCP); ends at L or close


class TcpRole(enum.Enum):
    """Which side opens the TCP connection."""

    SERVER = "server"  #: the analyzer connects to the gateway
    CLIENT = "client"  #: the gateway connects to the analyzer


@dataclass(frozen=True, slots=True)
class SerialDefaults:
    """RS-232 settings the family ships with (sites override them)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


@dataclass(frozen=True, slots=True)
class ResultContext:
    """The records a result belongs to, handed to extraction hooks."""

    delimiters: Delimiters
    patient: PatientRecord | None
    order: OrderRecord | None
    result: ResultRecord


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """One analyzer family.

    Attributes:
        name: the name used in the CLI and configuration (``generic-astm``).
        description: one line for ``lis-gateway drivers``.
        framing: E1381 frames or bare records.
        encoding: character encoding of record text (latin-1 is the ASTM default).
        serial: serial defaults.
        tcp_role: default TCP role.
        checksum_mode, repair_line_endings, lenient_frame_numbers, enq_optional,
        max_text, per_record_frames, lowercase_checksum, receive_timeout:
            link-layer dialect switches (see :class:`LinkConfig`).
        sample_id: hook giving the sample ID of a result.
        test_code: hook giving the analyzer's test code of a result.
    """

    name: str
    description: str
    sample_id: Callable[[ResultContext], str]
    test_code: Callable[[ResultContext], str]
    framing: Framing = Framing.E1381
    encoding: str = "latin-1"
    serial: SerialDefaults = field(default_factory=SerialDefaults)
    tcp_role: TcpRole = TcpRole.SERVER
    checksum_mode: ChecksumMode = ChecksumMode.STRICT
    repair_line_endings: bool = False
    lenient_frame_numbers: bool = False
    enq_optional: bool = False
    max_text: int = 240
    per_record_frames: bool = True
    lowercase_checksum: bool = False
    receive_timeout: float = 30.0

    def link_config(self, **overrides: object) -> LinkConfig:
        """The gateway-side (computer role) link configuration of this family."""
        values: dict[str, object] = {
            "checksum_mode": self.checksum_mode,
            "repair_line_endings": self.repair_line_endings,
            "lenient_frame_numbers": self.lenient_frame_numbers,
            "enq_optional": self.enq_optional,
            "max_text": self.max_text,
            "per_record_frames": self.per_record_frames,
            "lowercase_checksum": self.lowercase_checksum,
            "receive_timeout": self.receive_timeout,
        }
        values.update(overrides)
        return LinkConfig(**values)  # type: ignore[arg-type]
