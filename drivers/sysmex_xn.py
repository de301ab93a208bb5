"""sysmex-xn: Sysmex XN, XN-L, XS and XP haematology analyzers (ASTM E1381/E1394).

Dialect (protocols.md §4.2; corpus sysmex_1 XN-550, sysmex_2 and sysmex_4 XP-100):

* The sample number is O-4 component 3 (``rack^tube^sample no.^attribute``),
  right-aligned and space-padded (22 characters on the XN, 15 on the XP); O-3
  is empty in results. The number is trimmed.
* The parameter code is R-3 component 5 (``^^^^WBC^1``; component 6 is the
  dilution ratio).
* IP messages travel as pseudo-results and are instrument flags, not values:
  abnormal messages (``^^^^Eosinophilia``) with no value, no unit and flag A;
  suspect messages ending in ``?`` (``^^^^Blasts/Abn_Lympho?``) with the
  Q-flag score as the value.
* Scattergram and distribution images (``SCAT_WDF``, ``DIST_RBC``; the value
  is a file name such as ``PNG\\20240628\\...PNG``) are not results: ignored.
* R-9 is empty on the XP: the result status defaults to F.
* R-7 flags: L, H, LL, HH, N, ``>`` (out of assured linearity) and A
  (abnormal, or analysis/hardware error on a parameter) map to HL7 table 0078.
  W (low reliability) has no 0078 equivalent (HL7 W means "worse"), so it is
  left unmapped and reaches the technician as an instrument flag.
* QC: the XN-L ASTM host interface specification gives O-12 (action code)
  ``Q`` = QC analysis (N = initial, A = rerun/reflex), as transcribed in
  senaite.astm ``instruments/sysmex_xn.py``; H-12 = ``Q`` is honoured too, as
  LIS2-A2 defines it. No Sysmex QC transmission exists in the corpus, so
  neither rule is checked against a real capture.
"""

from __future__ import annotations

from types import MappingProxyType

from . import _astm_generic
from ._context import ResultContext, ResultRole
from ._spec import DriverSpec, QueryStyle, SerialDefaults, TcpRole

#: Parameter names of image results (the value is a file name on the IPU).
IMAGE_PREFIXES = ("SCAT_", "DIST_")

#: Sysmex R-7 flags -> HL7 table 0078 (W "low reliability" deliberately absent).
FLAG_MAP = MappingProxyType({
    "L": "L", "H": "H", "LL": "LL", "HH": "HH", "N": "N", ">": ">", "<": "<", "A": "A",
})


def sample_id(ctx: ResultContext) -> str:
    """O-4 component 3, trimmed; the generic rule when it is empty."""
    if ctx.order is not None:
        comps = ctx.delimiters.components(ctx.order.instrument_specimen_id)
        if len(comps) > 2 and comps[2].strip():
            return comps[2].strip()
    return _astm_generic.sample_id(ctx)


def test_code(ctx: ResultContext) -> str:
    """R-3 component 5 (``^^^^WBC^1`` gives WBC); the generic rule when it is empty."""
    comps = ctx.delimiters.components(ctx.result.universal_test_id)
    if len(comps) > 4 and comps[4].strip():
        return comps[4].strip()
    return _astm_generic.test_code(ctx)


def result_role(ctx: ResultContext) -> ResultRole:
    """Images are ignored, IP messages are instrument flags, the rest is reportable."""
    code = test_code(ctx)
    value = ctx.delimiters.text(ctx.result.value).strip()
    if code.upper().startswith(IMAGE_PREFIXES) or value.upper().startswith(("PNG\\", "BMP\\")):
        return ResultRole.IGNORED
    if code.endswith("?"):
        return ResultRole.INSTRUMENT_FLAG  # suspect IP message; the value is its Q-flag score
    if not value and not ctx.result.units.strip():
        return ResultRole.INSTRUMENT_FLAG  # abnormal IP message: no value, no unit, flag A
    return ResultRole.REPORTABLE




SPEC = DriverSpec(
    name="sysmex-xn",
    description="Sysmex XN/XN-L/XS/XP haematology (ASTM): sample no. O-4.3, parameter R-3.5",
    sample_id=sample_id,
    test_code=test_code,
    result_role=result_role,
    flag_map=FLAG_MAP,
    default_status="F",
    is_qc=_astm_generic.qc_by_processing_or_action,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    tcp_role=TcpRole.SERVER,
    query_style=QueryStyle.ASTM_Q,
    models="XN-L (XN-330/350/430/450/530/550), XN-10/XN-20, XS-500i/800i/1000i, XP-100/300",
    tested_with="corpus sysmex_1 (XN-550, senaite.astm), sysmex_2 (XP-100, senaite.astm)",
)
