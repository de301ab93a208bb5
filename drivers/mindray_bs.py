"""mindray-bs: Mindray BS-series chemistry, HL7 v2.3.1 "host interface" dialect.

The BS chemistry analyzers speak the Mindray HL7 "host interface" that the
CL-series immunoassay manual documents (Mindray Host Interface Manual P/N
046-005640-00, text extracted in hmislk/MindrayCL1000i). A BS-specific
manual exists ("BS-200/BS-220/BS-120/BS-130/BS-180 Host Interface Manual",
v1.2, 2009) but its message tables were not available here: every rule
below comes from the CL manual and must be checked against a BS capture.
What this driver relies on, with the manual's words:

* MSH-16 "Application Acknowledgment Type" is reused as the result kind:
  ``0`` sample result, ``1`` calibration result, ``2`` QC result, empty for
  other messages. QC runs are flagged ``qc`` (never patient results);
  calibration results are ``IGNORED`` (kept in the raw message, never
  reported).
* OBR-2 is the sample bar code, OBR-3 the analyzer's sample ID. The bar
  code is what the LIS ordered under, so it wins; a sample run without a
  bar code falls back to the sample ID (as the generic rule does).
* OBX-3 is the "channel number of test" set in Utility > System Setup >
  LIS Setup; OBX-4 is the test name. **The test code is the OBX-4 name,
  trimmed** (the OBX-3 number when OBX-4 is empty). Reasons: the channel
  number is a per-analyzer setting with no meaning outside that analyzer,
  so a table keyed on it maps silently to the wrong test when two
  analyzers are numbered differently (5 = ALT on one, AST on the other);
  a name that is not in the table is reported as not mapped instead. The
  channel number is still what a DSR^Q03 order download must carry
  (DSP-29 ``channel^name^unit^range``), which is the order side's business.
* OBX-6 units are padded with spaces (`` umol/L ``): the row keeps them as
  sent and the mapping compares trimmed units.
* OBX-8 is "fixed as N and reserved": the analyzer does not judge the
  result, so ``N`` maps to *no flag* rather than to HL7 ``N`` (normal),
  which would be a false statement for a value outside the range.
* OBX-13 repeats the original value, OBX-17 is ``1`` for a rerun result.
  After a rerun the analyzer sends the original and every rerun result:
  all are reported; the technician chooses. A value of ``-0x0fffffff``
  means "invalid value, see OBX-9" (qualitative result); it is kept as sent
  and never parses as a number.
* Query: QRY^Q02 -> QCK^Q02 + DSR^Q03 (31 positional DSP segments) -> ACK^Q03.
* The analyzer resends a result up to three times when no ACK^R01 comes.
"""

from __future__ import annotations

from types import MappingProxyType

from lis_gateway.hl7.message import Hl7Message

from . import _hl7_generic
from ._context import Hl7ResultContext, ResultRole
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, Protocol, QueryStyle

#: MSH-16 values (the Mindray result kind).
PATIENT, CALIBRATION, QC = "0", "1", "2"

#: OBX-8 is "fixed as N and reserved": N carries no judgement and maps to no flag.
FLAG_MAP = MappingProxyType({**DEFAULT_FLAG_MAP, "N": ""})


def result_kind(message: Hl7Message) -> str:
    """MSH-16 as the Mindray result kind (``0``, ``1``, ``2`` or ``""``)."""
    return message.delimiters.component_at(message.msh[16], 1).strip()


def is_qc(message: object) -> bool:
    """A QC result message (MSH-16 = 2)."""
    return isinstance(message, Hl7Message) and result_kind(message) == QC


def result_role(ctx: Hl7ResultContext) -> ResultRole:
    """Calibration results (MSH-16 = 1) are not results for the lab; the rest are."""
    if result_kind(ctx.message) == CALIBRATION:
        return ResultRole.IGNORED
    return ResultRole.REPORTABLE


def sample_id(ctx: Hl7ResultContext) -> str:
    """OBR-2 (sample bar code) unless empty or ``""``, else OBR-3 (sample ID)."""
    return _hl7_generic.first_obr_field(ctx, 2, 3)


def test_code(ctx: Hl7ResultContext) -> str:
    """OBX-4 (test name) trimmed; OBX-3 (channel number) when OBX-4 is empty."""
    d = ctx.message.delimiters
    name = d.text(ctx.obx[4]).strip()
    if name:
        return name
    return d.component_at(ctx.obx[3], 1).strip()


SPEC = DriverSpec(
    name="mindray-bs",
    description="Mindray BS chemistry (and CL immunoassay), HL7 2.3.1 host interface, "
                "test code from OBX-4",
    protocol=Protocol.HL7,
    hl7_sample_id=sample_id,
    hl7_test_code=test_code,
    hl7_result_role=result_role,
    hl7_always_ack=True,
    flag_map=FLAG_MAP,
    is_qc=is_qc,
    query_style=QueryStyle.MINDRAY_QRY,
    models="BS-120/130/180/200/220 and later BS models on the Mindray HL7 host interface; "
           "CL-1000i/2000i/2200i use the same messages",
    tested_with="Mindray host interface manual examples (CL series): patient ORU, QC ORU, "
                "QRY^Q02 (corpus mindray_1, mindray_2); no BS capture yet",
)
