"""Host queries from legacy HL7 analyzers (Mindray v2.3.1): QRY^Q02 -> QCK^Q02 + DSR^Q03.

The Mindray dialect (CL-series "Host Interface Manual" §1.2-1.3, reproduced in
shared/corpus/mindray_2.txt) is the pre-2.4 query model, not IHE LAW:

* the analyzer asks with ``QRY^Q02``: QRD-8 holds a tube barcode (real-time
  download), or QRF-4/QRF-5 the first and last sample ID (ID range), or
  QRF-2/QRF-3 a receipt time range (batch download);
* the host answers ``QCK^Q02`` with ``QAK|SR|OK`` when it has orders and
  ``QAK|SR|NF`` when it has none: "no order" is an answer, never silence;
* then, only after OK, one ``DSR^Q03`` per sample with 28 positional DSP
  segments plus one DSP per test (``channel^^^``); in a batch DSC-1 counts
  1, 2, ... and the last DSR's DSC-1 is empty. The analyzer ACKs each DSR.

Segments are written exactly as in the manual's examples, including the
trailing field separator the Mindray firmware writes and reads. The manual
puts ``RD`` in QRD-7 component 1 and leaves QRD-8 empty in DSR messages;
both are kept (hl7apy's strict v2.3.1 validation rejects them, see tests).

Analyzers read 8-bit text (manual §1.1.2: ISO 8859-1), so MSH-18 is ``ASCII``
and Vietnamese names are sent without diacritics (vietnam.md §3.1).

:class:`OrderedSample` (one tube and its tests) is shared with :mod:`.law`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.text import strip_diacritics

from .datatypes import encode_text, format_wall_time
from .delimiters import DEFAULT
from .errors import BuildError
from .message import Hl7Message, write_message
from .patient import PatientIdentity, Sex


class Priority(enum.Enum):
    """Sample priority; values are HL7 table 0485 codes (TQ1-9)."""

    ROUTINE = "R"
    STAT = "S"


#: HL7 table 0487 specimen type -> (HL7 display text, Mindray DSP-26 word).
SPECIMEN_TYPES: dict[str, tuple[str, str]] = {
    "SER": ("Serum", "serum"),
    "PLAS": ("Plasma", "plasma"),
    "UR": ("Urine", "urine"),
    "BLD": ("Whole blood", "whole blood"),
    "AMN": ("Amniotic fluid", "amniotic fluid"),
}

#: PID-8 / table 0001 -> Mindray DSP-5 (M, F, O; anything else is left blank).
MINDRAY_SEX: dict[Sex, str] = {Sex.MALE: "M", Sex.FEMALE: "F", Sex.OTHER: "O"}


@dataclass(frozen=True, slots=True)
class OrderedSample:
    """One tube with the tests ordered on it, as an analyzer downloads it."""

    sample_id: str  #: the tube barcode / specimen ID: DSP-21, SPM-2, SAC-3
    tests: tuple[tuple[str, str], ...]  #: (analyzer test code, name): DSP-29.., OBR-4
    patient: PatientIdentity  #: DSP-1..5, PID
    priority: Priority = Priority.ROUTINE  #: DSP-24 (Y/N), TQ1-9
    specimen_type: str = ""  #: HL7 table 0487 code (SER, PLAS, ...): DSP-26, SPM-4
    collected_at: datetime | None = None  #: DSP-12, SPM-17
    received_at: datetime | None = None  #: DSP-23, SPM-18
    analyzer_sample_no: str = ""  #: DSP-22: Mindray's "sample ID" (its run number)


@dataclass(frozen=True, slots=True)
class QueryProblem:
    """Why a query cannot be answered as asked (ERR, MSA-3/MSA-6 of the answer)."""

    segment: str  #: segment ID, e.g. "QRD"
    field: int  #: field number, 0 for the whole segment
    code: str  #: HL7 table 0357: 100 segment sequence, 101 required field missing, ...
    text: str  #: what is wrong, for the log


class SampleQueryKind(enum.Enum):
    """What a QRY^Q02 asks for."""

    BARCODE = "barcode"  #: QRD-8
    SAMPLE_ID_RANGE = "sample-id-range"  #: QRF-4..QRF-5
    TIME_RANGE = "time-range"  #: QRF-2..QRF-3
    UNUSABLE = "unusable"  #: none of these


@dataclass(frozen=True, slots=True)
class SampleQuery:
    """A parsed Mindray QRY^Q02."""

    control_id: str  #: MSH-10: MSA-2 of the QCK and of each DSR
    query_id: str  #: QRD-4, echoed in the DSR's QRD
    barcode: str  #: QRD-8 (component 1)
    first_sample_id: str  #: QRF-4
    last_sample_id: str  #: QRF-5 (equal to QRF-4 for a single sample)
    received_from: datetime | None  #: QRF-2, analyzer wall time (no offset)
    received_to: datetime | None  #: QRF-3, analyzer wall time (no offset)
    problems: tuple[QueryProblem, ...] = ()

    @property
    def kind(self) -> SampleQueryKind:
        """Barcode first, then sample-ID range, then time range (manual §1.2.4 QRF)."""
        if self.barcode:
            return SampleQueryKind.BARCODE
        if self.first_sample_id:
            return SampleQueryKind.SAMPLE_ID_RANGE
        if self.received_from or self.received_to:
            return SampleQueryKind.TIME_RANGE
        return SampleQueryKind.UNUSABLE


_WALL_FORMATS = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M", 10: "%Y%m%d%H", 8: "%Y%m%d"}


def _wall_time(raw: str, where: str, problems: list[QueryProblem]) -> datetime | None:
    digits = raw.split(".")[0].split("+")[0].split("-")[0].strip()
    if not digits:
        return None
    fmt = _WALL_FORMATS.get(len(digits))
    try:
        if fmt is None:
            raise ValueError(raw)
        return datetime.strptime(digits, fmt)
    except ValueError:
        segment, field = where.split("-")
        problems.append(QueryProblem(segment, int(field), "102", f"{where} {raw!r} is not a "
                                                                  "timestamp"))
        return None


def parse_qry_q02(message: Hl7Message) -> SampleQuery:
    """Read a Mindray QRY^Q02. Never raises: what is wrong is in ``problems``.

    Args:
        message: the query, parsed by :func:`~lis_gateway.hl7.message.parse_message`.

    Returns:
        The query; ``problems`` is empty when it can be answered.
    """
    problems: list[QueryProblem] = []
    if message.message_type != "QRY^Q02":
        problems.append(QueryProblem("MSH", 9, "200", f"not a QRY^Q02: {message.message_type}"))
    qrd, qrf = message.first("QRD"), message.first("QRF")
    if qrd is None:
        problems.append(QueryProblem("QRD", 0, "100", "no QRD segment"))
    d = message.delimiters
    barcode = d.component_at(qrd[8], 1) if qrd is not None else ""
    first, last = (d.text(qrf[4]), d.text(qrf[5])) if qrf is not None else ("", "")
    start = _wall_time(qrf[2], "QRF-2", problems) if qrf is not None else None
    end = _wall_time(qrf[3], "QRF-3", problems) if qrf is not None else None
    if qrd is not None and not (barcode or first or start or end):
        problems.append(QueryProblem("QRD", 8, "101", "no barcode (QRD-8), sample ID range "
                                                      "(QRF-4/5) or time range (QRF-2/3)"))
    query_id = d.text(qrd[4]) if qrd is not None else ""
    return SampleQuery(message.control_id, query_id, barcode, first, last, start, end,
                       tuple(problems))


# --- writing ---------------------------------------------------------------------------

#: HL7 table 0357 texts for the codes the gateway answers with (Mindray's MSA-3/MSA-6
#: table, manual §1.2.4, uses the same numbers and words; LAW's ERR-3 too).
ERROR_TEXTS: dict[str, str] = {
    "0": "Message accepted", "100": "Segment sequence error", "101": "Required field missing",
    "102": "Data type error", "103": "Table value not found",
    "200": "Unsupported message type", "207": "Application internal error",
}


def ascii_fold(text: str) -> str:
    """Text without diacritics for 8-bit analyzers: ``Nguyễn Văn Đức`` -> ``Nguyen Van Duc``."""
    return strip_diacritics(text).encode("ascii", "replace").decode("ascii")


def _seg(name: str, fields: Sequence[str]) -> str:
    """A Mindray segment: every field, then the trailing separator the manual shows."""
    return DEFAULT.field.join([name, *fields]) + DEFAULT.field


def _write(segments: Sequence[str]) -> bytes:
    """Encode as ASCII (MSH-18), folding anything else to its bare letters."""
    return write_message([ascii_fold(s) for s in segments], "ascii")


def _msh(message_type: str, control_id: str, now: datetime, accept_ack: str = "") -> str:
    if not control_id:
        raise BuildError("MSH-10 (message control ID) is empty")
    # MSH-3..6 empty and no UTC offset in MSH-7, as in the manual's examples.
    fields = ["", "", "", "", format_wall_time(now), "", message_type,
              encode_text(control_id), "P", "2.3.1", "", "", accept_ack, "", "", "ASCII", "", ""]
    return "MSH" + DEFAULT.field + DEFAULT.encoding_characters + DEFAULT.field + \
        DEFAULT.field.join(fields) + DEFAULT.field


def _msa_err(control_id: str, problems: Sequence[QueryProblem]) -> list[str]:
    code = problems[0].code if problems else "0"
    ack = "AA" if not problems else ("AR" if code.startswith("2") else "AE")
    text = ERROR_TEXTS.get(code, ERROR_TEXTS["207"])
    return [_seg("MSA", [ack, encode_text(control_id), text, "", "", code]), _seg("ERR", ["0"])]


def build_qck_q02(query: SampleQuery, *, found: bool, control_id: str, now: datetime) -> bytes:
    """QCK^Q02: the immediate answer to a QRY^Q02.

    Args:
        query: the parsed query.
        found: the host has at least one sample for it (then DSR^Q03 messages follow).
        control_id: MSH-10 (the manual's examples reuse the query's).
        now: MSH-7, written as wall time without offset.

    Returns:
        ``QAK|SR|OK`` if found, ``QAK|SR|NF`` if not, ``AE`` (MSA and QAK) when the
        query has problems.
    """
    status = "AE" if query.problems else ("OK" if found else "NF")
    segments = [_msh("QCK^Q02", control_id, now), *_msa_err(query.control_id, query.problems),
                _seg("QAK", ["SR", status])]
    return _write(segments)


def _dsp_values(sample: OrderedSample) -> dict[int, str]:
    """DSP-n data lines (manual §1.2.4 DSP table) that the gateway fills."""
    patient = sample.patient
    word = SPECIMEN_TYPES.get(sample.specimen_type, ("", "other"))[1] \
        if sample.specimen_type else ""
    birth = patient.birth_date.strftime("%Y%m%d") + "000000" if patient.birth_date else ""
    return {
        1: patient.hospital_id,
        3: patient.display_name,
        4: birth,
        5: MINDRAY_SEX.get(patient.sex, ""),
        12: format_wall_time(sample.collected_at) if sample.collected_at else "",
        21: sample.sample_id,
        22: sample.analyzer_sample_no,
        23: format_wall_time(sample.received_at) if sample.received_at else "",
        24: "Y" if sample.priority is Priority.STAT else "N",
        26: word,
    }


def _dsp_segments(sample: OrderedSample) -> list[str]:
    if not sample.sample_id:
        raise BuildError("the sample has no barcode (DSP-21)")
    if not sample.tests:
        raise BuildError(f"sample {sample.sample_id} has no tests (DSP-29)")
    values = _dsp_values(sample)
    lines = [encode_text(values.get(n, "")) for n in range(1, 29)]
    # DSP-29..: "channel^name^unit^range"; the manual sends the channel only.
    lines += [encode_text(code) + "^^^" for code, _name in sample.tests]
    return [_seg("DSP", [str(n), "", line, "", ""]) for n, line in enumerate(lines, 1)]


def build_dsr_q03(sample: OrderedSample, *, query: SampleQuery | None, control_id: str,
                  now: datetime, continuation: str = "") -> bytes:
    """DSR^Q03: one sample for the analyzer.

    Args:
        sample: the tube and its tests.
        query: the QRY^Q02 being answered, or None for an unsolicited download
            (MSH-15 = ``P`` as the manual asks, MSA-2 = this message's ID).
        control_id: MSH-10.
        now: MSH-7 and QRD-1, written as wall time without offset.
        continuation: DSC-1: ``1``, ``2``, ... in a batch, empty for the last
            (or only) sample.

    Raises:
        BuildError: no barcode, no tests, or an empty control ID.
    """
    stamp = format_wall_time(now)
    acked = query.control_id if query else control_id
    query_id = query.query_id if query else ""
    segments = [_msh("DSR^Q03", control_id, now, "" if query else "P"), *_msa_err(acked, ()),
                _seg("QAK", ["SR", "OK"]),
                _seg("QRD", [stamp, "R", "D", encode_text(query_id), "", "", "RD", "", "OTH",
                             "", "", "T"]),
                _seg("QRF", ["", "", "", "", "", "RCT", "COR", "ALL", ""]),
                *_dsp_segments(sample), _seg("DSC", [encode_text(continuation)])]
    return _write(segments)


def build_dsr_q03_batch(samples: Sequence[OrderedSample], *, query: SampleQuery | None,
                        control_ids: Sequence[str], now: datetime) -> list[bytes]:
    """One DSR^Q03 per sample, DSC-1 counting 1..n-1 and empty on the last.

    Raises:
        BuildError: not one control ID per sample, or a sample that cannot be sent.
    """
    if len(control_ids) != len(samples):
        raise BuildError(f"{len(samples)} samples need as many control IDs, "
                         f"got {len(control_ids)}")
    last = len(samples)
    return [build_dsr_q03(s, query=query, control_id=c, now=now,
                          continuation="" if i == last else str(i))
            for i, (s, c) in enumerate(zip(samples, control_ids, strict=True), 1)]
