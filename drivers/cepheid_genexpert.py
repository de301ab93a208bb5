"""cepheid-genexpert: Cepheid GeneXpert PCR systems (ASTM E1381/E1394, ``H|@^\\`` dialect).

Dialect (protocols.md §4; corpus cepheid_1, Xpert MTB/RIF Ultra):

* The header declares repeat ``@``, component ``^``, escape ``\\``; the codec
  reads them from H.
* R-3 has 8 components (GeneXpert LIS Interface Protocol Specification
  302-2261 Rev. E, as transcribed in senaite.astm ``instruments/genexpert.py``)::

      ^<panel>^^<test code>^<assay name>^<assay version>^<analyte or result code>^<complement>
      ^MTB-RIF^^Xpert^Xpert MTB-RIF Ultra^4^MTB^        main result of the test
      ^MTB-RIF^^Xpert^^^rpoB1^                          analyte (probe) result
      ^MTB-RIF^^Xpert^^^rpoB1^Ct                        complementary result

  Component 4 is the assay host test code (single-result test) or the result
  test code (multi-result test, here ``Xpert``, ``Trace``, ``RIF``); component
  5 (assay name) and 6 (version) are sent on the main result only;
  component 8 is ``Ct``, ``EndPt``, ``Delta Ct`` or ``Conc/LOG``.
* Test code: component 4, then ``/`` and component 7 when there is one, on a
  main result (``Xpert/MTB``, ``Trace/MTB Trace``, ``RIF/RIF Resistance``);
  on the other rows always component 4 ``/`` component 7, plus ``/``
  component 8 when present (``Xpert/rpoB1``, ``Xpert/SPC/Ct``; a probe row
  sent without its name gives ``Xpert/``). Component 2 (the panel) is not
  part of the key, so the sender's misspelt ``^MTB-RI^`` (R|21 of the
  fixture) still gives ``Trace/rpoB1`` like its neighbours.
* Roles: the main result (assay name or version present) is reportable; its
  qualitative value is R-4 component 1 (``NOT DETECTED^``). Probe results
  (``rpoB1`` INVALID, ``SPC`` PASS) and complementary Ct/EndPt numbers (R-4
  component 2, ``^24.7``) are supplementary: they belong to the main result
  before them and are not lab values for the clinician.
* QC: no GeneXpert QC transmission in the corpus; H-12 = Q is recognised.
"""

from __future__ import annotations

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import HeaderRecord

from . import _astm_generic
from ._context import ResultContext, ResultRole
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, QueryStyle, SerialDefaults, TcpRole


def _components(ctx: ResultContext) -> list[str]:
    comps = [c.strip() for c in ctx.delimiters.components(ctx.result.universal_test_id)]
    return comps + [""] * (8 - len(comps))


def is_main_result(ctx: ResultContext) -> bool:
    """The test's own result: assay name (component 5) or version (component 6) present."""
    comps = _components(ctx)
    return bool(comps[4] or comps[5])


def test_code(ctx: ResultContext) -> str:
    """``<component 4>/<component 7>[/<component 8>]``, see the module documentation."""
    comps = _components(ctx)
    code = comps[3] or comps[1]
    if not code:
        return _astm_generic.test_code(ctx)
    if is_main_result(ctx):
        return f"{code}/{comps[6]}" if comps[6] else code
    key = f"{code}/{comps[6]}"
    return f"{key}/{comps[7]}" if comps[7] else key


def result_role(ctx: ResultContext) -> ResultRole:
    """Main results are reportable; probe and Ct/EndPt rows are supplementary."""
    if is_main_result(ctx):
        return ResultRole.REPORTABLE
    return ResultRole.SUPPLEMENTARY


def is_qc(message: object) -> bool:
    """A QC run: H-12 = Q (LIS2-A2); GeneXpert's own QC marking is not known."""
    if not isinstance(message, AstmMessage):
        return False
    delims = message.decoded.delimiters
    return any(isinstance(rec, HeaderRecord) and delims.text(rec.processing_id).strip() == "Q"
               for rec in message.decoded.records)


SPEC = DriverSpec(
    name="cepheid-genexpert",
    description="Cepheid GeneXpert PCR (ASTM, H|@^\\ delimiters), test code assay/analyte",
    sample_id=_astm_generic.sample_id,
    test_code=test_code,
    result_role=result_role,
    flag_map=DEFAULT_FLAG_MAP,
    default_status="F",
    is_qc=is_qc,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    tcp_role=TcpRole.SERVER,
    query_style=QueryStyle.ASTM_Q,
    models="GeneXpert Dx (GX-I/II/IV/XVI), GeneXpert Infinity",
    tested_with="corpus cepheid_1 (Xpert MTB/RIF Ultra, senaite.astm genexpert.txt)",
)
