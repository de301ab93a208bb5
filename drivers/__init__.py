"""Analyzer drivers: one module per family, listed explicitly in REGISTRY.

Only the composition root (``lis_gateway.service``) and the CLI import this
package; the protocol core never does. See docs/architecture.md on the
top-level package name.
"""

from __future__ import annotations

from . import generic_astm, generic_hl7
from ._context import Hl7ResultContext, ResultContext
from ._spec import DriverSpec, Framing, Protocol, SerialDefaults, TcpRole

REGISTRY: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (generic_astm.SPEC, generic_hl7.SPEC)
}


def get(name: str) -> DriverSpec:
    """Return the driver called ``name``.

    Raises:
        KeyError: with the list of known drivers in its message.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "DriverSpec", "Framing", "Hl7ResultContext", "Protocol", "ResultContext",
           "SerialDefaults", "TcpRole", "get"]
