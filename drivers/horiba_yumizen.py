"""horiba-yumizen: Horiba Yumizen H500/H550 and ABX Pentra XL 80/XLR haematology (ASTM).

Dialect (protocols.md §4; corpus horiba_1 Pentra XLR, horiba_2..5 Yumizen):

* The sample ID is O-3 component 1 (``S1234^00^00`` is id^rack^position on
  the Pentra); the test code is R-3 component 4 (``^^^WBC^6690-2``; component
  5 is a LOINC-like code the analyzer adds, not always a valid one: the Pentra
  sends ``789-9`` for RBC and ``2100-5`` for RDW-SD, so it is never trusted).
* R-5 on the Pentra is a unit-set number (``1``), not a unit text; the
  Yumizen sends text (``10E3/uL``, ``um3``). The row keeps R-5 as sent.
* ``-----`` is a value that could not be computed (with R-9 = X).
* R-9: F final, W suspicion (an alarm on the parameter), X over the
  analyzer's capacity (Pentra also N rejected, M manual, D dilution). These
  are Horiba's meanings, not HL7 table 0085 ones (HL7 W means "wrong, post
  as wrong"): they must not be copied into OBX-11 unmapped.
* M records (HISTOGRAM, MATRIX, REAGENT: base64 deflate float arrays, up to
  26 KB in one frame) are not R records and give no rows.
* Lenient frame numbers: the Yumizen fixture numbers every M frame 1.
* QC: H-12 = Q (processing ID), or O-16 component 1 starting with CTRL
  (``CTRL^^CTRL MEDIUM``, ``CTRL^^CTRLLOW``).
"""

from __future__ import annotations

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import HeaderRecord, OrderRecord

from . import _astm_generic
from ._context import ResultContext
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, QueryStyle, SerialDefaults, TcpRole


def test_code(ctx: ResultContext) -> str:
    """R-3 component 4 (``^^^WBC^6690-2`` gives WBC); the generic rule when it is empty."""
    comps = ctx.delimiters.components(ctx.result.universal_test_id)
    if len(comps) > 3 and comps[3].strip():
        return comps[3].strip()
    return _astm_generic.test_code(ctx)


def is_qc(message: object) -> bool:
    """A QC run: H-12 = Q, or an O-16 specimen descriptor whose first component starts CTRL."""
    if not isinstance(message, AstmMessage):
        return False
    delims = message.decoded.delimiters
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord) and delims.text(rec.processing_id).strip() == "Q":
            return True
        if isinstance(rec, OrderRecord):
            kind = delims.components(rec.specimen_descriptor)[0].strip().upper()
            if kind.startswith("CTRL"):
                return True
    return False


SPEC = DriverSpec(
    name="horiba-yumizen",
    description="Horiba Yumizen H500/H550 and ABX Pentra haematology (ASTM), test code R-3.4",
    sample_id=_astm_generic.sample_id,
    test_code=test_code,
    flag_map=DEFAULT_FLAG_MAP,
    default_status="F",
    # R-9 W is ASTM "warning: validity questionable"; HL7 OBX-11 W would mean "wrong,
    # replace". R ("entered, not verified") keeps it in front of a person.
    status_map={"W": "R", "X": "X", "F": "F"},
    is_qc=is_qc,
    lenient_frame_numbers=True,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    tcp_role=TcpRole.SERVER,
    query_style=QueryStyle.ASTM_Q,
    models="Yumizen H500, H550; ABX Pentra XL 80, Pentra XLR",
    tested_with="corpus horiba_1 (Pentra XLR), horiba_2/3 (Yumizen QC), horiba_4/5 (Yumizen H500)",
)
