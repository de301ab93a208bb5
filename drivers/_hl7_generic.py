"""Generic HL7 extraction hooks (the defaults of every HL7 driver)."""

from __future__ import annotations

from lis_gateway.hl7.message import Hl7Message, Segment

from ._context import AnalyzerPatient, Hl7ResultContext, ResultRole


def first_obr_field(ctx: Hl7ResultContext, *numbers: int) -> str:
    """The first non-empty OBR field among ``numbers`` (first component, trimmed; ``""`` is
    HL7's explicit null and counts as empty)."""
    if ctx.obr is None:
        return ""
    d = ctx.message.delimiters
    for n in numbers:
        value = d.component_at(ctx.obr[n], 1).strip()
        if value and value != '""':
            return value
    return ""


def sample_id(ctx: Hl7ResultContext) -> str:
    """SPM-2, else OBR-2 (unless empty or ``""``), else OBR-3; first component, trimmed."""
    if ctx.spm is not None:
        sid = ctx.message.delimiters.component_at(ctx.spm[2], 1).strip()
        if sid:
            return sid
    return first_obr_field(ctx, 2, 3)


def test_code(ctx: Hl7ResultContext) -> str:
    """OBX-3 identifier, else OBX-3 text, else OBX-4 (Mindray CL and Wondfo put names there)."""
    d = ctx.message.delimiters
    for n in (1, 2):
        code = d.component_at(ctx.obx[3], n).strip()
        if code:
            return code
    return d.text(ctx.obx[4]).strip()


def is_result(ctx: Hl7ResultContext) -> bool:
    """Every OBX except value type IS (Mindray run-mode settings)."""
    return ctx.obx[2].strip().upper() != "IS"


def completed_at(ctx: Hl7ResultContext) -> str:
    """OBX-14, date and time of the observation."""
    return ctx.obx[14]


def analysis_or_observation_time(ctx: Hl7ResultContext) -> str:
    """OBX-19 (analysis time, v2.5), else OBX-14 (Maglumi and BA400 put the result time in 19)."""
    return ctx.obx[19] or ctx.obx[14]


def specimen_role(spm: Segment | None, message: Hl7Message) -> str:
    """SPM-11 first component, upper case (``P`` patient, ``Q`` control, ``C`` calibrator)."""
    if spm is None:
        return ""
    return message.delimiters.component_at(spm[11], 1).strip().upper()


def qc_by_specimen_role(message: object) -> bool:
    """Any specimen of the message has SPM-11 = Q (control material)."""
    if not isinstance(message, Hl7Message):
        return False
    return any(specimen_role(spm, message) == "Q" for spm in message.named("SPM"))


def calibrators_ignored(ctx: Hl7ResultContext) -> ResultRole:
    """Results on calibrator specimens (SPM-11 = C) are not results."""
    if specimen_role(ctx.spm, ctx.message) == "C":
        return ResultRole.IGNORED
    return ResultRole.REPORTABLE


def patient(ctx: Hl7ResultContext) -> AnalyzerPatient | None:
    """The PID before the OBX: PID-3 first CX.1 (else PID-2), PID-5, PID-7, PID-8."""
    pid = ctx.pid
    if pid is None:
        return None
    d = ctx.message.delimiters
    ident = next((d.component_at(rep, 1).strip() for rep in d.repeats(pid[3])
                  if d.component_at(rep, 1).strip()), "") or d.component_at(pid[2], 1).strip()
    name = d.repeats(pid[5])
    first = name[0] if name else ""
    sex = d.text(pid[8]).strip().upper()[:1]
    found = AnalyzerPatient(
        patient_id=ident, family_name=d.component_at(first, 1).strip(),
        given_name=d.component_at(first, 2).strip(),
        middle_name=d.component_at(first, 3).strip(),
        birth_date=d.component_at(pid[7], 1).strip(),
        sex=sex if sex in ("M", "F") else "U" if sex else "")
    return found or None
