"""generic-astm: standard E1381/E1394; sample ID from O-3, test code from R-3 component 4 on."""

from __future__ import annotations

from ._spec import DriverSpec

SPEC = DriverSpec(
    name="generic-astm",
    description="Standard ASTM E1381/E1394 (LIS1-A/LIS2-A2), test code from R-3 component 4",
)
