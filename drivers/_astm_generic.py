"""Generic ASTM extraction hooks (the defaults of every ASTM driver)."""

from __future__ import annotations

from ._context import ResultContext


def first_component(raw: str, ctx: ResultContext) -> str:
    """First component of a raw field, escapes decoded, spaces trimmed."""
    return ctx.delimiters.components(raw)[0].strip()


def sample_id(ctx: ResultContext) -> str:
    """O-3 first component; when O-3 is empty, the first non-empty component of O-4."""
    if ctx.order is None:
        return ""
    sid = first_component(ctx.order.specimen_id, ctx)
    if sid:
        return sid
    for comp in ctx.delimiters.components(ctx.order.instrument_specimen_id):
        if comp.strip():
            return comp.strip()
    return ""


def test_code(ctx: ResultContext) -> str:
    """First non-empty component of R-3 from the fourth on.

    ``^^^GLU`` gives GLU, ``^^^^WBC^1`` gives WBC; a field with no components
    is taken whole; a field with components but none from the fourth on gives
    its first non-empty component.
    """
    raw = ctx.result.universal_test_id
    comps = ctx.delimiters.components(raw)
    if len(comps) == 1:
        return comps[0].strip()
    for comp in comps[3:]:
        if comp.strip():
            return comp.strip()
    for comp in comps:
        if comp.strip():
            return comp.strip()
    return ""
