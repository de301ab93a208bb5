"""mindray-bc: Mindray BC-series haematology (BC-5130, BC-5380, BC-6800), HL7 v2.3.1.

Results arrive as ORU^R01; the analyzer asks for a tube's work with an
ORM^O01 worklist request, answered ORR^O02 (``QueryStyle.MINDRAY_ORM``).

What this driver relies on (capture mindray_4, a BC-5130; a Mindray BC
operator's manual, appendix C "Communication", public copy at
anyflip.com/ejdur/cbcy: "OBR: sample information, including sample No.,
operator and run time"; worklist queries use ORM/ORR):

* **Sample ID = OBR-3** (filler order number). The BC-5130 leaves OBR-2
  empty and puts the sample ID (typed or read from the bar code) in OBR-3;
  OBR-2 is used only when OBR-3 is empty.
* **Test code = OBX-3 component 2, the Mindray parameter name** (``WBC``,
  ``NEU#``, ``RDW-CV``, ``PLCR``). Every row carries it, whether component 1
  is a LOINC code (``6690-2^WBC^LN``) or a Mindray local number
  (``10002^PCT^99MRC``). One key family for all rows, and it does not depend
  on the LOINC codes the firmware chose (analyzers speaking this same
  dialect have been seen sending ``6790-2`` for WBC and ``736-9``, the
  lymphocyte code, for MID%). The LOINC code the analyzer sends stays in
  the raw message; the mapping table holds the checked one.
  Component 1, then OBX-4, are used only when component 2 is empty.
* OBX-2 ``IS`` rows are run settings (Take Mode, Blood Mode, Test Mode,
  Ref Group): ``IGNORED``. An ``IS`` row whose value is ``T`` is an alarm
  that was raised (public BC examples: ``12002^Leucocytosis^99MRC||T``,
  ``12045^Multiple alerts^99MRC||T``, with ``F`` for alarms not raised): it
  becomes an ``INSTRUMENT_FLAG`` attached to the sample's results, so the
  alarm travels with them (and can stop auto-verification). The T/F
  convention is read from public examples, not from a Mindray manual.
* ``ED`` rows (histogram and scattergram binaries) and the patient age
  (LOINC 30525-0) are not results: ``IGNORED``.
* OBX-8 repeats, e.g. ``L~N`` or ``H~A``: each repeat goes through the flag
  map. ``N`` maps to *no flag*, so ``L~N`` gives ``L`` rather than the
  contradiction ``L`` + ``N``; ``A`` stays ``A`` (abnormal) and ``H``/``L``
  stay as they are. The meaning of the second repeat is not documented in
  anything public found so far.
* QC: MSH-16 = ``2``, the Mindray host-interface convention (documented in
  the CL-series manual). Not confirmed for the BC series: no BC QC capture
  and no BC QC example was found, so a BC QC run may still arrive as an
  ordinary result.
* **Worklist query: ORM^O01 with ORC-1 ``RF``, answered ORR^O02**
  (``MINDRAY_ORM``; built in :mod:`lis_gateway.hl7.worklist`, answered by
  :mod:`lis_gateway.hl7.responder`). The sample ID asked for is ORC-3 (ORC-2
  when ORC-3 is empty). No order: ``MSA|AR`` alone. An order: ``MSA|AA``,
  PID, PV1, ``ORC|AF``, OBR ``00001^Automated Count^99MRC`` and the run
  settings as OBX ``IS`` rows: Blood Mode ``W`` and Test Mode ``CBC+DIFF``
  when a differential parameter (NEU, LYM, MON, EOS, BAS, MID, GRAN, ALY,
  LIC) is ordered, else ``CBC``. **No Mindray manual was available**: the
  exchange is taken from public third-party descriptions (sources in
  tests/fixtures/hl7/README.md, fixture mindray_bc_orm), the "not found"
  form being said to be the BC-5300 operator's manual example (pp.
  489-490); the test-mode rule, the PID forms and UTF-8 names with
  diacritics under MSH-18 ``UNICODE`` are inferred, and nothing of it has
  been tried on an analyzer. The analyzer is said to wait about 2 s for
  the answer.
"""

from __future__ import annotations

from types import MappingProxyType

from lis_gateway.hl7.message import Hl7Message

from . import _hl7_generic
from ._context import Hl7ResultContext, ResultRole
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, Protocol, QueryStyle

#: ``N`` (in either repeat) is "nothing to flag".
FLAG_MAP = MappingProxyType({**DEFAULT_FLAG_MAP, "N": ""})

#: LOINC codes in OBX-3 that describe the patient, not the sample.
NOT_RESULTS = frozenset({"30525-0"})  # Age


def is_qc(message: object) -> bool:
    """MSH-16 = 2 (Mindray QC result kind)."""
    if not isinstance(message, Hl7Message):
        return False
    return message.delimiters.component_at(message.msh[16], 1).strip() == "2"


def sample_id(ctx: Hl7ResultContext) -> str:
    """OBR-3 first component, trimmed; OBR-2 when OBR-3 is empty."""
    return _hl7_generic.first_obr_field(ctx, 3, 2)


def test_code(ctx: Hl7ResultContext) -> str:
    """OBX-3 component 2 (Mindray name); else component 1; else OBX-4."""
    d = ctx.message.delimiters
    for n in (2, 1):
        code = d.component_at(ctx.obx[3], n).strip()
        if code:
            return code
    return d.text(ctx.obx[4]).strip()


def is_result(_ctx: Hl7ResultContext) -> bool:
    """Every OBX becomes a row; :func:`result_role` says which ones are results."""
    return True


def result_role(ctx: Hl7ResultContext) -> ResultRole:
    """IS settings and binaries are ignored, raised IS alarms are instrument flags."""
    d = ctx.message.delimiters
    value_type = ctx.obx[2].strip().upper()
    if value_type == "IS":
        if d.text(ctx.obx[5]).strip().upper() == "T":
            return ResultRole.INSTRUMENT_FLAG
        return ResultRole.IGNORED
    if value_type == "ED":
        return ResultRole.IGNORED
    if d.component_at(ctx.obx[3], 1).strip() in NOT_RESULTS:
        return ResultRole.IGNORED
    return ResultRole.REPORTABLE


SPEC = DriverSpec(
    name="mindray-bc",
    description="Mindray BC haematology, HL7 2.3.1 ORU^R01, sample ID OBR-3, "
                "test code OBX-3.2 (parameter name); worklist ORM^O01 -> ORR^O02",
    protocol=Protocol.HL7,
    hl7_sample_id=sample_id,
    hl7_test_code=test_code,
    hl7_is_result=is_result,
    hl7_result_role=result_role,
    hl7_always_ack=True,
    flag_map=FLAG_MAP,
    is_qc=is_qc,
    query_style=QueryStyle.MINDRAY_ORM,
    models="BC-5130, BC-5380, BC-6800 (and BC models sending the same ORU^R01)",
    tested_with="BC-5130 capture (corpus mindray_4, paras-rana11/lab_lis): stray STX "
                "bytes, no FS, IS rows, L~N flags; worklist ORM^O01/ORR^O02 from public "
                "third-party descriptions only (fixture mindray_bc_orm), not tried on an "
                "analyzer",
)
