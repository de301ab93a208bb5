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

from . import _astm_generic
from ._spec import DriverSpec, QueryStyle, SerialDefaults

SPEC = DriverSpec(
    name="beckman-access",
    description="Beckman Coulter Access 2 / UniCel DxI (ASTM, one record per frame)",
    sample_id=_astm_generic.sample_id_o3_or_o4_first,
    test_code=_astm_generic.test_code,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    default_status="F",
    is_qc=_astm_generic.qc_by_processing_or_action,
    query_style=QueryStyle.ASTM_Q,
    models="Access 2, UniCel DxI 600/800",
    tested_with="corpus beckman_1 (Access 2, RS-232)",
)
