"""Analyzer drivers: one module per family, each defining ``SPEC`` (a DriverSpec).

Adding a family means adding one module (and its fixtures and mapping
table): every module of this package whose name does not start with ``_``
and that defines ``SPEC`` is registered, in name order. Only the composition
root, the CLI and the offline decoder import this package; the protocol core
never does. See docs/architecture.md on the top-level package name.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._context import AnalyzerPatient, Hl7ResultContext, ResultContext, ResultRole
from ._spec import (
    DEFAULT_FLAG_MAP,
    DriverSpec,
    Framing,
    Protocol,
    QueryStyle,
    SerialDefaults,
    TcpRole,
)


def _discover() -> dict[str, DriverSpec]:
    found: dict[str, DriverSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "extract":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, DriverSpec):
            continue
        if spec.name in found:
            raise RuntimeError(f"two drivers are called {spec.name!r}")
        found[spec.name] = spec
    return found


REGISTRY: dict[str, DriverSpec] = _discover()


def get(name: str) -> DriverSpec:
    """Return the driver called ``name``.

    Raises:
        KeyError: with the list of known drivers in its message.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["DEFAULT_FLAG_MAP", "REGISTRY", "AnalyzerPatient", "DriverSpec", "Framing",
           "Hl7ResultContext", "Protocol", "QueryStyle", "ResultContext", "ResultRole",
           "SerialDefaults", "TcpRole", "get"]
