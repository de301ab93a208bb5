"""DriverSpec: what one analyzer family needs, as data plus small pure hooks.

A driver module defines one :class:`DriverSpec`; :mod:`drivers` lists them
all. The core (``lis_gateway.astm``) never imports drivers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.astm.host_query import LIS2_A2, ReplyStyle
from lis_gateway.astm.link import LinkConfig

from . import _astm_generic, _hl7_generic
from ._context import AnalyzerPatient, Hl7ResultContext, ResultContext, ResultRole


class QueryStyle(enum.Enum):
    """How the family asks the host for work (documentation for the driver list)."""

    NONE = "none"  #: results only
    ASTM_Q = "astm-q"  #: ASTM Q record after the barcode is read; host answers in a new session
    MINDRAY_QRY = "mindray-qry"  #: HL7 QRY^Q02 -> QCK^Q02 + DSR^Q03
    LAW_QBP = "law-qbp"  #: IHE LAW QBP^Q11 -> RSP^K11 + OML^O33
    MINDRAY_ORM = "mindray-orm"  #: HL7 ORM^O01 with ORC-1 RF (worklist request) -> ORR^O02


#: Analyzer flag -> HL7 table 0078. Families override or extend this.
DEFAULT_FLAG_MAP: Mapping[str, str] = MappingProxyType({
    "L": "L", "H": "H", "LL": "LL", "HH": "HH", "N": "N", "A": "A", "AA": "AA",
    "<": "<", ">": ">", "U": "U", "D": "D", "B": "B", "W": "W", "S": "S", "R": "R",
    "I": "I", "MS": "MS", "VS": "VS", "POS": "POS", "NEG": "NEG",
})


@dataclass(frozen=True, slots=True)
class CustomDecode:
    """What a vendor-protocol decoder found in captured bytes.

    Attributes:
        rows: result rows (``drivers.extract.ResultRow``), in order.
        messages: how many complete messages were read.
        problems: each with its byte offset, in words a technician can act on.
    """

    rows: tuple[Any, ...]
    messages: int
    problems: tuple[str, ...] = ()


def _reportable(_ctx: object) -> ResultRole:
    return ResultRole.REPORTABLE


def _never_qc(_message: object) -> bool:
    return False


def _lis2a2_reply(_message: Any) -> ReplyStyle:
    return LIS2_A2


class Protocol(enum.Enum):
    """The analyzer's protocol family."""

    ASTM = "astm"  #: ASTM E1381/E1394 (or bare E1394 records)
    HL7 = "hl7"  #: HL7 v2 over MLLP


class Framing(enum.Enum):
    """How records travel on the wire."""

    E1381 = "e1381"  #: ENQ / frames with checksums / EOT (serial or TCP)
    BARE = "bare"  #: E1394 records with no E1381 framing (TCP); ends at L or close
    CUSTOM = "custom"  #: a vendor byte protocol (Beckman AU online): ``custom_decoder`` reads it


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
class DriverSpec:
    """One analyzer family.

    Attributes:
        name: the name used in the CLI and configuration (``generic-astm``).
        description: one line for ``lis-gateway drivers``.
        protocol: ASTM or HL7.
        framing: E1381 frames or bare records (ASTM only).
        encoding: character encoding of ASTM record text (latin-1 is the ASTM default).
        serial: serial defaults.
        tcp_role: default TCP role.
        checksum_mode, repair_line_endings, lenient_frame_numbers, enq_optional,
        max_text, per_record_frames, lowercase_checksum, receive_timeout:
            link-layer dialect switches (see :class:`LinkConfig`).
        sample_id, test_code: ASTM hooks giving a result's sample ID and test code.
        hl7_sample_id, hl7_test_code, hl7_is_result, hl7_completed_at: the same for HL7
            OBX segments (the result time is OBX-14, or OBX-19 for some families).
        hl7_encoding: forces the HL7 character set; ``None`` honours a sane MSH-18.
        hl7_default_encoding: used when MSH-18 is absent or unknown.
        hl7_always_ack: answer even when MSH-15/16 say NE (Snibe waits for an ACK anyway).
        missing_fs_timeout: silence that ends an MLLP block sent without FS.
        completed_at: ASTM hook for the result time (R-13; some families use R-12).
        unit, reference_range, flags: ASTM hooks for R-5, R-6 and R-7 (a family may
            read flags from the C records after the R, or drop a range *name*).
        status_map: the family's result status -> HL7 OBX-11 (F, C, P, X, ...); a
            status not in the map is passed on as sent.
        result_role, hl7_result_role: which result records are reportable, supplementary
            (interpretation, raw signal, Ct), instrument flags, or ignored.
        flag_map: the family's flag codes -> HL7 table 0078; unknown flags are kept
            as instrument flags with a problem.
        default_status: result status to assume when the analyzer leaves it empty.
        timezone: the analyzer clock's IANA time zone (ASTM carries none).
        timestamp_formats: extra ``strptime`` formats beyond YYYYMMDD[HHMM[SS]].
        is_qc: recognises a QC run (H-12 = Q, O-16 control, MSH-16 = 2, ...), so QC
            is never reported as a patient result.
        query_style: how the family asks for work.
        astm_reply: the form of the answer to an ASTM host query, chosen from the
            query message (LIS2-A2 unless the family writes another).
        mapping_table: name of its table in ``mappings/`` (default: the driver name).
        custom_decoder: for ``Framing.CUSTOM``: captured bytes -> rows and problems.
        models: analyzer models the family covers, for the driver list.
        tested_with: what the fixtures are derived from, for the README table.
    """

    name: str
    description: str
    protocol: Protocol = Protocol.ASTM
    sample_id: Callable[[ResultContext], str] = _astm_generic.sample_id
    test_code: Callable[[ResultContext], str] = _astm_generic.test_code
    hl7_sample_id: Callable[[Hl7ResultContext], str] = _hl7_generic.sample_id
    hl7_test_code: Callable[[Hl7ResultContext], str] = _hl7_generic.test_code
    hl7_is_result: Callable[[Hl7ResultContext], bool] = _hl7_generic.is_result
    hl7_completed_at: Callable[[Hl7ResultContext], str] = _hl7_generic.completed_at
    patient: Callable[[ResultContext], AnalyzerPatient | None] = _astm_generic.patient
    hl7_patient: Callable[[Hl7ResultContext], AnalyzerPatient | None] = _hl7_generic.patient
    hl7_encoding: str | None = None
    hl7_default_encoding: str = "utf-8"
    hl7_always_ack: bool = True
    missing_fs_timeout: float = 1.0
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
    unit: Callable[[ResultContext], str] = _astm_generic.unit
    completed_at: Callable[[ResultContext], str] = _astm_generic.completed_at
    reference_range: Callable[[ResultContext], str] = _astm_generic.reference_range
    flags: Callable[[ResultContext], tuple[str, ...]] = _astm_generic.flags
    status_map: Mapping[str, str] = field(default_factory=dict)
    result_role: Callable[[ResultContext], ResultRole] = _reportable
    hl7_result_role: Callable[[Hl7ResultContext], ResultRole] = _reportable
    flag_map: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FLAG_MAP)
    default_status: str = "F"
    timezone: str = "Asia/Ho_Chi_Minh"
    timestamp_formats: tuple[str, ...] = ()
    is_qc: Callable[[Any], bool] = _never_qc
    query_style: QueryStyle = QueryStyle.NONE
    astm_reply: Callable[[Any], ReplyStyle] = _lis2a2_reply
    mapping_table: str = ""
    custom_decoder: Callable[[bytes], CustomDecode] | None = None
    models: str = ""
    tested_with: str = ""

    @property
    def table_name(self) -> str:
        """The mapping table's file stem in a mappings directory."""
        return self.mapping_table or self.name

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
