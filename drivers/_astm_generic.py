"""Generic ASTM extraction hooks (the defaults of every ASTM driver)."""

from __future__ import annotations

from ._context import AnalyzerPatient, ResultContext


def first_component(raw: str, ctx: ResultContext) -> str:
    """First component of a raw field, escapes decoded, spaces trimmed."""
    return ctx.delimiters.components(raw)[0].strip()


def sample_id(ctx: ResultContext) -> str:
    """O-3 first component; when O-3 is empty, the first non-empty component of O-4."""
    if ctx.order is None:
        return ""
    sid = first_component(ctx.order.specimen_id, ctx)
    if sid:
        return sid
    for comp in ctx.delimiters.components(ctx.order.instrument_specimen_id):
        if comp.strip():
            return comp.strip()
    return ""


def sample_id_o3_or_o4_first(ctx: ResultContext) -> str:
    """O-3 component 1, trimmed; else O-4 component 1 (never a rack or position number)."""
    if ctx.order is None:
        return ""
    sid = first_component(ctx.order.specimen_id, ctx)
    return sid or first_component(ctx.order.instrument_specimen_id, ctx)


def test_code(ctx: ResultContext) -> str:
    """First non-empty component of R-3 from the fourth on.

    ``^^^GLU`` gives GLU, ``^^^^WBC^1`` gives WBC; a field with no components
    is taken whole; a field with components but none from the fourth on gives
    its first non-empty component.
    """
    raw = ctx.result.universal_test_id
    comps = ctx.delimiters.components(raw)
    if len(comps) == 1:
        return comps[0].strip()
    for comp in comps[3:]:
        if comp.strip():
            return comp.strip()
    for comp in comps:
        if comp.strip():
            return comp.strip()
    return ""


def unit(ctx: ResultContext) -> str:
    """R-5 with escapes decoded."""
    return ctx.delimiters.text(ctx.result.units)


def reference_range(ctx: ResultContext) -> str:
    """R-6 with escapes decoded."""
    return ctx.delimiters.text(ctx.result.reference_range)


def flags(ctx: ResultContext) -> tuple[str, ...]:
    """The non-empty repeats of R-7, each with escapes decoded."""
    d = ctx.delimiters
    return tuple(d.text(f) for f in d.repeats(ctx.result.abnormal_flags) if f)


def qc_by_processing_or_action(message: object) -> bool:
    """The usual ASTM QC marks: H-12 = Q, or an O record with O-12 = Q."""
    from lis_gateway.astm.assembler import AstmMessage
    from lis_gateway.astm.records import HeaderRecord, OrderRecord

    if not isinstance(message, AstmMessage):
        return False
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord) and rec.processing_id.strip().upper() == "Q":
            return True
        if isinstance(rec, OrderRecord) and rec.action_code.strip().upper() == "Q":
            return True
    return False


def completed_at(ctx: ResultContext) -> str:
    """R-13 (date and time the test was completed), as sent."""
    return ctx.result.completed_at


def completed_or_started_at(ctx: ResultContext) -> str:
    """R-13, else R-12: analyzers that fill only "started" (cobas c 311, Atellica DM)."""
    return ctx.result.completed_at or ctx.result.started_at


def _sex(code: str) -> str:
    code = code.strip().upper()[:1]
    return code if code in ("M", "F") else "U" if code else ""


def patient(ctx: ResultContext) -> AnalyzerPatient | None:
    """The P record before the result: P-3 (else P-4, P-5), P-6 last^first^middle, P-8, P-9."""
    rec = ctx.patient
    if rec is None:
        return None
    d = ctx.delimiters
    pid = next((first_component(f, ctx) for f in (rec.practice_patient_id,
                rec.laboratory_patient_id, rec.patient_id_3) if first_component(f, ctx)), "")
    name = [c.strip() for c in d.components(rec.name)] + ["", "", ""]
    found = AnalyzerPatient(patient_id=pid, family_name=name[0], given_name=name[1],
                            middle_name=name[2],
                            birth_date=first_component(rec.birthdate, ctx),
                            sex=_sex(d.text(rec.sex)))
    return found or None
