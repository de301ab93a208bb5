"""biosystems-ba: BioSystems BA400 / BA200 chemistry, HL7 v2.5.1 IHE LAW (LAB-27, LAB-29).

What this driver relies on (hmislk/limsmw application.log, corpus
biosystems_1..4; IHE PaLM TF LAW):

* Results are OUL^R22 (MSH-21 ``LAB-29^IHE``), MSH-15/16 = ``ER|AL``: an
  application ACK^R22 is expected. Queries are QBP^Q11 (``LAB-27^IHE``,
  ``QPD|WOS^Work Order Step^IHE_LABTF|<tag>|<specimen>``, ``RCP|I||R``),
  answered RSP^K11 then OML^O33.
* No PID: **sample ID = SPM-2** (a name may be typed in front of the
  number, even with a space: ``DAYAWATHI SU32989000``); it is kept as sent.
* **Test code = OBX-3 component 1** in the analyzer's code system ``A400``
  (``CHOL HDL DIRECT``, ``ALT-GPT``). Units are OBX-6 component 1.
* Values carry up to nine significant digits (``177.710159``); the mapping
  table's ``decimals`` rounds them.
* **OBX-8 is not HL7 table 0078.** ``NONE`` means no flag and maps to none.
  The numeric codes (``025``, ``030``) are BA400 alarm codes whose meaning is
  not published with the captures: they are not mapped, so each is kept as
  an instrument flag (with an ``unknown-flag`` problem) for a person to read.
* OBX-14 is empty; the analysis time is in OBX-19 (rows carry OBX-14, so
  ``completed_at`` is empty). In the captures OBX-19 runs 5 h 30 min ahead
  of MSH-7 and of the receiving host's log clock (whose ACKs say +0530),
  which an analysis time cannot be: treat OBX-19 with care.
* A 1024-byte socket read cut 34 of 329 messages in that log
  (biosystems_4): only FS CR ends a message.
* SPM-11 (specimen role, HL7 table 0369) is ``P``; ``Q`` (control) marks the
  message as QC and ``C`` (calibrator) rows are ignored.
"""

from __future__ import annotations

from types import MappingProxyType

from . import _hl7_generic
from ._spec import DEFAULT_FLAG_MAP, DriverSpec, Protocol, QueryStyle

#: ``NONE`` is "no alarm". The numeric alarm codes are deliberately absent.
FLAG_MAP = MappingProxyType({**DEFAULT_FLAG_MAP, "NONE": ""})








SPEC = DriverSpec(
    hl7_completed_at=_hl7_generic.analysis_or_observation_time,
    name="biosystems-ba",
    description="BioSystems BA400/BA200, HL7 2.5.1 IHE LAW OUL^R22, sample ID SPM-2, "
                "numeric OBX-8 alarms kept as instrument flags",
    protocol=Protocol.HL7,
    hl7_always_ack=True,
    hl7_result_role=_hl7_generic.calibrators_ignored,
    flag_map=FLAG_MAP,
    is_qc=_hl7_generic.qc_by_specimen_role,
    query_style=QueryStyle.LAW_QBP,
    models="BA400, BA200",
    tested_with="BA400 log (corpus biosystems_1..4, hmislk/limsmw): OUL^R22, QBP^Q11, "
                "LIS ACK^R22, a message cut at 1023 bytes",
)
