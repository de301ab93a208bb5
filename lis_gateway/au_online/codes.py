"""Distinction codes the link treats differently (the first two characters of a text).

From the analyzer (results): ``DB`` / ``DE`` start and end a result transfer;
``D_``, ``d_``, ``DH``, ``dH`` are sample results, ``DQ`` QC results, ``DA``
calibration and ``DR`` reagent blank results (``_`` is a space). A text whose
code starts with ``R`` is a host query (the analyzer asks for a sample's
tests; the host answers with ``S`` texts). The layout of those requests and
answers differs between AU models, and the gateway does not build them.
"""

from __future__ import annotations

#: Start and end of a result transfer: no content.
MARKERS = frozenset({"DB", "DE"})
#: Results the gateway does not keep (calibration, reagent blank).
IGNORED = frozenset({"DA", "DR"})
#: Texts acknowledged at once, with nothing to store first.
IMMEDIATE = MARKERS | IGNORED


def kind_of(text: bytes) -> str:
    """The distinction code of a text (its first two characters, Latin-1)."""
    return text[:2].decode("latin-1")


def is_host_query(kind: str) -> bool:
    """A request from the analyzer for a sample's tests (``R`` texts)."""
    return kind[:1] == "R"
