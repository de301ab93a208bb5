"""What the atheris harnesses share: the drivers with their shipped mapping tables, and
the checks every decoded item must pass. Imported by the harnesses only (under
``atheris.instrument_imports``), never by pytest.
"""

from __future__ import annotations

from pathlib import Path

import drivers
from drivers import DriverSpec, Framing, Protocol
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.capture import CaptureReport, normalize_report
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.mapping import MappingTable, load_table

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def drivers_of(protocol: Protocol) -> list[tuple[DriverSpec, MappingTable | None]]:
    """Every registered driver of ``protocol`` with its shipped table, in name order."""
    return [(spec, load_table([MAPPINGS], spec.table_name))
            for _name, spec in sorted(drivers.REGISTRY.items())
            if spec.protocol is protocol]


def check_message(msg: AstmMessage | Hl7Message, spec: DriverSpec,
                  table: MappingTable | None, rows: list[object]) -> None:
    """A decoded message keeps its bytes, explains its problems, and normalizes."""
    assert msg.raw, "a message without bytes"
    for problem in msg.problems:
        assert problem.message and problem.severity in ("error", "warning"), problem
    report = CaptureReport(messages=[msg], rows=[(0, row) for row in rows])  # type: ignore[misc]
    for _number, result in normalize_report(report, spec, table):
        assert result.row is not None
        assert all(isinstance(p, str) and p for p in result.problems), result.problems


def check_incomplete(item: IncompleteTransmission) -> None:
    """Text that never became a message says why."""
    assert item.reason, "an incomplete transmission without a reason"


def options(data: bytes, count: int) -> tuple[bytes, bytes]:
    """Split an input into the wire bytes and ``count`` option bytes (the last ones), so a
    capture with option bytes appended is a seed that reaches deep states at once."""
    if len(data) < count:
        return b"", data.rjust(count, b"\0")
    return data[:-count], data[-count:]


def is_custom(spec: DriverSpec) -> bool:
    """A vendor byte protocol (read by the driver's own decoder)."""
    return spec.framing is Framing.CUSTOM
