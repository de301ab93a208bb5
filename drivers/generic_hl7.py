"""generic-hl7: HL7 v2 ORU^R01 / OUL^R22 over MLLP; sample ID from SPM-2 or OBR-2/3."""

from __future__ import annotations

from ._spec import DriverSpec, Protocol

SPEC = DriverSpec(
    name="generic-hl7",
    description="HL7 v2 ORU^R01 or OUL^R22 (IHE LAW) over MLLP, test code from OBX-3",
    protocol=Protocol.HL7,
)
