"""beckman-access: Beckman Coulter Access 2 and UniCel DxI immunoassay systems (ASTM).

What differs from generic ASTM (source: the corpus capture beckman_1 from an
Access 2; the UniCel DxI and Access 2 LIS Vendor Information describes the
same record layout):

* **One record per frame**, each ending in ETX: valid E1381, nothing to switch.
* **O-3** is whatever the operator typed or the barcode held, sometimes a
  person's name. It is kept as sent (trimmed); matching it against the LIS is
  the only safe test. **O-4** is ``^rack^position``: its components 2 and 3 are
  never taken as a sample ID.
* **Test ID** ``^^^TSH3^1``: component 4 is the assay name, component 5 the
  replicate/dilution number.
* **``L|1|F``** ("last request processed") closes plain result uploads; it is
  not an error.
* **QC**: O-12 = ``Q`` or H-12 = ``Q``.
"""

from __future__ import annotations

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import HeaderRecord, OrderRecord

from . import _astm_generic
from ._context import ResultContext
from ._spec import DriverSpec, QueryStyle, SerialDefaults


def sample_id(ctx: ResultContext) -> str:
    """O-3 component 1, trimmed; else O-4 component 1 (empty on the Access: no rack number)."""
    order = ctx.order
    if order is None:
        return ""
    sid = ctx.delimiters.components(order.specimen_id)[0].strip()
    if sid:
        return sid
    return ctx.delimiters.components(order.instrument_specimen_id)[0].strip()


def test_code(ctx: ResultContext) -> str:
    """R-3 component 4, the assay name (``^^^TSH3^1`` gives ``TSH3``)."""
    comps = ctx.delimiters.components(ctx.result.universal_test_id)
    if len(comps) >= 4 and comps[3].strip():
        return comps[3].strip()
    return _astm_generic.test_code(ctx)


def is_qc(message: object) -> bool:
    """A control run: H-12 = ``Q`` or O-12 = ``Q``."""
    if not isinstance(message, AstmMessage):
        return False
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord) and rec.processing_id.strip().upper() == "Q":
            return True
        if isinstance(rec, OrderRecord) and rec.action_code.strip().upper() == "Q":
            return True
    return False


SPEC = DriverSpec(
    name="beckman-access",
    description="Beckman Coulter Access 2 / UniCel DxI (ASTM, one record per frame)",
    sample_id=sample_id,
    test_code=test_code,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    default_status="F",
    is_qc=is_qc,
    query_style=QueryStyle.ASTM_Q,
    models="Access 2, UniCel DxI 600/800",
    tested_with="corpus beckman_1 (Access 2, RS-232)",
)
