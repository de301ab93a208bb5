"""snibe-maglumi: Snibe MAGLUMI chemiluminescence, HL7 v2.5 OUL^R22 (not IHE LAW).

What this driver relies on (captures snibe_1 and snibe_2, paras-rana11/lab_lis):

* MSH-15/16 = ``NE|NE`` ("no acknowledgement"), yet the MAGLUMI waits for
  one: the gateway always answers (``hl7_always_ack``).
* No FS: each message is ``VT ... CR`` then ``CR LF``. A message ends at the
  next VT, or after ``missing_fs_timeout`` of silence.
* No MSH-21 profile and an all-empty PID; the specimen comes first:
  **sample ID = SPM-2** first component (``1^^`` gives ``1``); SPM-4 is text
  (``Serum``).
* **Test code = OBX-3** (plain ``TSH``, ``25-OH VD II``; OBR-4 repeats it as
  ``TSH^1``). OBX-2 (value type) is empty.
* OBX-5 carries a trailing component separator (``1.08^``): the row keeps
  it as sent; value parsing ignores trailing empty components.
* OBX-8 uses ``H``/``L``/``N`` against the range in OBX-7 (``0.3 to 4.5``).
* OBX-14 is the run's registration time (it equals ORC-9 on the first run);
  OBX-19 is the time the result was produced. Rows carry OBX-14.
* **Batch uploads resend older runs.** In snibe_2, sample ``11`` carries
  TSH three times (OBX-14 on 20, 21 and 24 August), T4 and T3 twice. The
  MAGLUMI sample IDs here are short run numbers reused from day to day, so
  these rows may belong to different patients: every row is reported as its
  own result, none replaces another; the pair (sample ID, OBX-14) tells runs
  apart. A rerun typed by the operator gets its own ID (``13re``).
* SPM-11 (specimen role, HL7 table 0369) is ``P``; ``Q`` (control) marks the
  message as QC and ``C`` (calibrator) rows are ignored.
"""

from __future__ import annotations

from . import _hl7_generic
from ._spec import DriverSpec, Protocol, QueryStyle

SPEC = DriverSpec(
    hl7_completed_at=_hl7_generic.analysis_or_observation_time,
    name="snibe-maglumi",
    description="Snibe MAGLUMI, HL7 2.5 OUL^R22 without LAW profile, NE|NE but acknowledged, "
                "no FS",
    protocol=Protocol.HL7,
    hl7_always_ack=True,
    missing_fs_timeout=1.0,
    hl7_result_role=_hl7_generic.calibrators_ignored,
    is_qc=_hl7_generic.qc_by_specimen_role,
    query_style=QueryStyle.NONE,
    models="MAGLUMI series (captures from an unnamed MAGLUMI model)",
    tested_with="MAGLUMI captures (corpus snibe_1, snibe_2, paras-rana11/lab_lis): no FS, "
                "NE|NE, batch of 9 messages resending older runs",
)
