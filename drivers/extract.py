"""Turn a decoded ASTM message into flat result rows, through a driver's hooks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import OrderRecord, PatientRecord, ResultRecord

from ._spec import DriverSpec, ResultContext


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One result as the analyzer reported it (before any mapping).

    ``value`` is R-4 as sent with escapes decoded (``1.08^`` stays so);
    ``flags`` are the non-empty repeats of R-7.
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

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (flags as a list)."""
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d


def extract_results(message: AstmMessage, spec: DriverSpec) -> list[ResultRow]:
    """Every R record of ``message`` as a :class:`ResultRow`, in order."""
    delims = message.decoded.delimiters
    patient: PatientRecord | None = None
    order: OrderRecord | None = None
    rows: list[ResultRow] = []
    for index, rec in enumerate(message.decoded.records):
        if isinstance(rec, PatientRecord):
            patient, order = rec, None
        elif isinstance(rec, OrderRecord):
            order = rec
        elif isinstance(rec, ResultRecord):
            ctx = ResultContext(delims, patient, order, rec)
            flags = tuple(delims.text(f) for f in delims.repeats(rec.abnormal_flags) if f)
            rows.append(ResultRow(
                sample_id=spec.sample_id(ctx),
                test=spec.test_code(ctx),
                value=delims.text(rec.value),
                unit=delims.text(rec.units),
                reference_range=delims.text(rec.reference_range),
                flags=flags,
                status=delims.text(rec.status),
                completed_at=rec.completed_at,
                instrument=delims.text(rec.instrument_id),
                record_index=index,
            ))
    return rows
