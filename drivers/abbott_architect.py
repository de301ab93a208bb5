"""abbott-architect: Abbott ARCHITECT i/c/ci systems (Abbott Standard Interface, ASTM).

What differs from generic ASTM (sources: the Abbott Standard Interface RS-232
Manual for ARCHITECT as summarised by senaite.astm's ARCHITECT profile, the
corpus capture abbott_2 and other public ARCHITECT transcripts):

* **R-3** is ``^^^<assay no.>^<assay name>^<dilution>^<status>^<reagent lot>^
  <reagent serial>^<control lot>^<result type>``. The test code is the assay
  number (component 4); the name travels with it (component 5).
* **Several R records per assay**, told apart by the result type (component
  11): ``F`` final result (concentration, or the control result) is the
  reportable value; ``I`` interpretation (``Nonreactive``) and ``P``
  preliminary instrument response (RLU) are supplementary.
* **Sample ID** in O-3; else O-4 component 1 (O-4 = ``specimen^carrier^position``).
* **R-9** is ``F`` (final) or ``R`` (previously transmitted).
* **Five H…L messages may follow each other in one session**; ``L|1`` has no code.
* **Flags** (R-7) include ``LOW``/``HIGH`` besides ``LL``/``HH``/``<``/``>``,
  and non-0078 codes (``EXP``, ``EXPC``, ``EDIT``, ``CNTL``, Westgard rules,
  ``A#1``, ...) which stay instrument flags. Several flags are separated by the
  *component* delimiter (``EXP^<``).
* **QC**: O-12 = ``Q``, H-12 = ``Q``, or a control lot in R-3 component 10.
"""

from __future__ import annotations

from types import MappingProxyType

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import HeaderRecord, OrderRecord, ResultRecord

from . import _astm_generic
from ._context import ResultContext, ResultRole
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, QueryStyle, SerialDefaults

#: R-3 result types (the last component).
RESULT_TYPE_FINAL = "F"  #: final result: concentration, index, or control result
RESULT_TYPE_INTERPRETATION = "I"  #: interpretation of the final result (patients only)
RESULT_TYPE_PRELIMINARY = "P"  #: preliminary instrument response (RLU, mAbs, mV)
_RESULT_TYPES = frozenset({RESULT_TYPE_FINAL, RESULT_TYPE_INTERPRETATION,
                           RESULT_TYPE_PRELIMINARY})

#: ARCHITECT writes LOW/HIGH where HL7 table 0078 has L/H.
FLAG_MAP = MappingProxyType({**DEFAULT_FLAG_MAP, "LOW": "L", "HIGH": "H"})






def result_type(ctx: ResultContext) -> str:
    """The R-3 result type (component 11): ``F``, ``I`` or ``P``; ``""`` when absent.

    A shorter R-3 (``^^^580^Anti-HBcII^UNDILUTED^P``, the order form) has no result
    type: its last component is the assay status (``P`` primary, ``C`` correlation).
    """
    comps = ctx.delimiters.components(ctx.result.universal_test_id)
    if len(comps) < 11:
        return ""
    kind = comps[10].strip().upper()
    return kind if kind in _RESULT_TYPES else ""


def result_role(ctx: ResultContext) -> ResultRole:
    """``F`` (or no result type) is reportable; ``I`` and ``P`` are supplementary."""
    if result_type(ctx) in (RESULT_TYPE_INTERPRETATION, RESULT_TYPE_PRELIMINARY):
        return ResultRole.SUPPLEMENTARY
    return ResultRole.REPORTABLE


def is_qc(message: object) -> bool:
    """A control run: H-12 = ``Q``, O-12 = ``Q``, or a control lot in R-3 component 10."""
    if not isinstance(message, AstmMessage):
        return False
    delims = message.decoded.delimiters
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord) and rec.processing_id.strip().upper() == "Q":
            return True
        if isinstance(rec, OrderRecord) and rec.action_code.strip().upper() == "Q":
            return True
        if isinstance(rec, ResultRecord):
            comps = delims.components(rec.universal_test_id)
            if len(comps) >= 11 and comps[9].strip():
                return True
    return False


SPEC = DriverSpec(
    name="abbott-architect",
    description="Abbott ARCHITECT i/c/ci (Abbott Standard Interface, ASTM); F/I/P result types",
    sample_id=_astm_generic.sample_id_o3_or_o4_first,
    test_code=_astm_generic.test_code,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    result_role=result_role,
    flag_map=FLAG_MAP,
    default_status="F",
    is_qc=is_qc,
    query_style=QueryStyle.ASTM_Q,
    models="ARCHITECT i1000SR, i2000/i2000SR, c4000, c8000, c16000, ci4100, ci8200, ci16200",
    tested_with="corpus abbott_2 (i-series, five messages in one session)",
)
