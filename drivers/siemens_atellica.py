"""siemens-atellica: Siemens Atellica Data Manager relaying its instruments (ASTM).

What differs from generic ASTM (source: the corpus capture siemens_3, Atellica
Data Manager 1.4.1.8 relaying an Atellica HEMA 580):

* **The middleware is the sender.** H-5 is empty and its name is in H-9
  (``ATELLICA DATA MANAGER 1.4.1.8``, see :func:`sender_name`); the instrument
  that measured is in R-14 (``HEMA580``).
* **Test IDs have 9 components** (``^^^CRC^^^^^N``): the code is component 4.
* **No units and an empty R-9.** An empty status is the data manager's released
  result, so the default status is ``F``; units come from the mapping table.
* **Sample ID** in O-3; O-4 is ``^rack^position`` and never gives the ID.
* **QC**: O-12 = ``Q`` or H-12 = ``Q``.

The Siemens DCA Vantage (corpus siemens_1: sample ID in P-3, correction
factors in comments) is a different family and is not covered here.
"""

from __future__ import annotations

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import HeaderRecord

from . import _astm_generic
from ._spec import DriverSpec, QueryStyle


def sender_name(message: AstmMessage) -> str:
    """H-9 (the data manager's name), else H-5 component 1."""
    delims = message.decoded.delimiters
    for rec in message.decoded.records:
        if isinstance(rec, HeaderRecord):
            name = delims.text(rec.sender_characteristics).strip()
            return name or delims.components(rec.sender_id)[0].strip()
    return ""




SPEC = DriverSpec(
    completed_at=_astm_generic.completed_or_started_at,
    name="siemens-atellica",
    description="Siemens Atellica Data Manager (ASTM); 9-component test IDs, empty status = final",
    sample_id=_astm_generic.sample_id_o3_or_o4_first,
    test_code=_astm_generic.test_code,
    default_status="F",
    is_qc=_astm_generic.qc_by_processing_or_action,
    query_style=QueryStyle.NONE,
    models="Atellica Data Manager 1.4 relaying Atellica HEMA 570/580 (and other Atellica modules)",
    tested_with="corpus siemens_3 (Atellica Data Manager 1.4.1.8, HEMA580 reticulocytes)",
)
