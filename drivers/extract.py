"""Turn a decoded ASTM message into flat result rows, through a driver's hooks."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import CommentRecord, OrderRecord, PatientRecord, ResultRecord
from lis_gateway.hl7.message import Hl7Message

from ._context import AnalyzerPatient, Hl7ResultContext, ResultContext, ResultRole
from ._spec import DriverSpec


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One result as the analyzer reported it (before any mapping).

    ``value`` is R-4 as sent with escapes decoded (``1.08^`` stays so);
    ``flags`` are the non-empty repeats of R-7. ``patient`` is the analyzer's
    own patient record around the result (patient data: left out of
    :meth:`to_dict`, ``repr`` and comparisons; the store uses it only for
    analyzers configured ``unsolicited = true``).
    """

    sample_id: str
    test: str
    value: str
    unit: str
    reference_range: str
    flags: tuple[str, ...]
    status: str
    completed_at: str
    instrument: str
    record_index: int
    role: ResultRole = ResultRole.REPORTABLE
    qc: bool = False
    patient: AnalyzerPatient | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (flags as a list; no patient data)."""
        d: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)
                                if f.name != "patient"}
        d["flags"] = list(self.flags)
        d["role"] = self.role.value
        return d


def extract_results(message: AstmMessage, spec: DriverSpec) -> list[ResultRow]:
    """Every R record of ``message`` as a :class:`ResultRow`, in order.

    The driver's ``patient`` hook is asked once per P/O pair (with the context
    of its first result), not once per result: it reads the P record, and a
    20-result message would otherwise parse the same patient 20 times.
    """
    delims = message.decoded.delimiters
    qc = spec.is_qc(message)
    patient: PatientRecord | None = None
    order: OrderRecord | None = None
    rows: list[ResultRow] = []
    records = message.decoded.records
    owner: AnalyzerPatient | None = None
    owner_read = False  # ``owner`` belongs to the current P/O pair
    for index, rec in enumerate(records):
        if isinstance(rec, PatientRecord):
            patient, order, owner_read = rec, None, False
        elif isinstance(rec, OrderRecord):
            order, owner_read = rec, False
        elif isinstance(rec, ResultRecord):
            comments = []
            for following in records[index + 1:]:
                if not isinstance(following, CommentRecord):
                    break
                comments.append(following)
            ctx = ResultContext(delims, patient, order, rec, tuple(comments))
            if not owner_read:
                owner, owner_read = spec.patient(ctx), True
            rows.append(ResultRow(
                sample_id=spec.sample_id(ctx),
                test=spec.test_code(ctx),
                value=delims.text(rec.value),
                unit=spec.unit(ctx),
                reference_range=spec.reference_range(ctx),
                flags=spec.flags(ctx),
                status=delims.text(rec.status),
                completed_at=spec.completed_at(ctx),
                instrument=delims.text(rec.instrument_id),
                record_index=index,
                role=spec.result_role(ctx),
                qc=qc,
                patient=owner,
            ))
    return rows


def extract_hl7_results(message: Hl7Message, spec: DriverSpec) -> list[ResultRow]:
    """Every result OBX of an HL7 message as a :class:`ResultRow`, in order.

    Each OBX is read with the nearest SPM, OBR and PID before it. The
    ``hl7_patient`` hook is asked once per PID/OBR/SPM group, as in
    :func:`extract_results`.
    """
    d = message.delimiters
    qc = spec.is_qc(message)
    obr = spm = pid = None
    rows: list[ResultRow] = []
    owner: AnalyzerPatient | None = None
    owner_read = False
    for index, seg in enumerate(message.segments):
        name = seg.name
        if name == "PID":
            pid, obr, spm, owner_read = seg, None, None, False
        elif name == "SPM":
            spm, owner_read = seg, False
        elif name == "OBR":
            obr, owner_read = seg, False
        elif name == "OBX":
            ctx = Hl7ResultContext(message, seg, obr, spm, pid)
            if not spec.hl7_is_result(ctx):
                continue
            if not owner_read:
                owner, owner_read = spec.hl7_patient(ctx), True
            rows.append(ResultRow(
                sample_id=spec.hl7_sample_id(ctx),
                test=spec.hl7_test_code(ctx),
                value=d.text(seg[5]),
                unit=d.component_at(seg[6], 1),
                reference_range=d.text(seg[7]),
                flags=tuple(d.text(f) for f in d.repeats(seg[8]) if f),
                status=d.text(seg[11]),
                completed_at=spec.hl7_completed_at(ctx),
                instrument=d.text(seg[18]),
                record_index=index,
                role=spec.hl7_result_role(ctx),
                qc=qc,
                patient=owner,
            ))
    return rows
