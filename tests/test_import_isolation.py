"""The sans-IO core imports no I/O framework (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ["twisted", "sqlalchemy", "structlog", "prometheus_client", "serial"]


def test_core_imports_no_io_framework() -> None:
    """Importing lis_gateway.astm and drivers pulls in none of the I/O libraries."""
    code = (
        "import sys, json\n"
        "import lis_gateway.astm, lis_gateway.astm.link, lis_gateway.astm.assembler\n"
        "import lis_gateway.hl7.mllp, lis_gateway.hl7.message, lis_gateway.hl7.ack\n"
        "import drivers, drivers.extract\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


def test_core_reads_no_clock() -> None:
    """The core never imports time nor asks datetime for the time: time is an argument."""
    import ast
    from pathlib import Path

    import lis_gateway.astm as astm_core
    import lis_gateway.hl7 as hl7_core

    paths = [*Path(astm_core.__file__).parent.glob("*.py"),
             *Path(hl7_core.__file__).parent.glob("*.py")]
    for path in paths:
        source = path.read_text()
        tree = ast.parse(source)
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        assert "time" not in names, path.name
        for clock_call in (".now(", ".utcnow(", ".today(", "time.time(", "monotonic("):
            assert clock_call not in source, (path.name, clock_call)
