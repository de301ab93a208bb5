"""erba-xl: Erba XL-series clinical chemistry (ASTM E1381/E1394, `` |`^& `` dialect).

Dialect (protocols.md §4; corpus erba_1, erba_2):

* The header declares a **backquote repeat delimiter** (``H|`^&``); the O-5
  test list uses it (``^^^Na`^^^K``). Nothing driver-specific is needed: the
  codec reads the delimiters from H.
* Sample ID O-3, test code R-3 component 4 (``^^^ALT``): the generic rules.
  The test codes are the names configured on the analyzer (``Na``, ``CR``,
  ``DBIL``), case as sent.
* R-6 = ``^DEFAULT`` is the name of the analyzer's reference-range set, not a
  range: :func:`reference_range` reports it as empty.
* Values include ``NA`` (no result).
* Flags: R-7 carries one code (``N``, ``A``, ``R1?``); the comment after the
  R record repeats the whole list, comma-separated (``C|1|I|Instrument Flag
  A,H``). :func:`split_flags` and :func:`comment_flags` split such lists.
  Only N, H, L, HH and LL are mapped to HL7 table 0078: Erba's ``A`` is sent
  on in-range values (Na 141.95) and on ``NA`` results alike, so it does not
  mean HL7 "abnormal"; it and ``R1?`` stay instrument flags for the technician.
* Frames of 1025 characters (FN + 1024) that end in ETB mid-field.
* QC: no Erba QC transmission in the corpus; H-12 = Q and O-12 = Q (the
  LIS2-A2 meanings) are recognised.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from lis_gateway.astm.delimiters import Delimiters

from . import _astm_generic
from ._context import ResultContext
from ._spec import DriverSpec, QueryStyle, SerialDefaults, TcpRole

#: Erba flags whose meaning matches HL7 table 0078.
FLAG_MAP = MappingProxyType({"N": "N", "H": "H", "L": "L", "HH": "HH", "LL": "LL"})

_COMMENT_PREFIX = "instrument flag"


def reference_range(raw: str, delimiters: Delimiters) -> str:
    """R-6 without a trailing range-set name: ``^DEFAULT`` gives ``""``.

    The range is component 1; later components name the analyzer's range set.
    """
    return delimiters.components(raw)[0].strip()


def split_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """Flag repeats split on commas: ``("A,H",)`` gives ``("A", "H")``."""
    return tuple(part.strip() for flag in flags for part in flag.split(",") if part.strip())


def comment_flags(text: str) -> tuple[str, ...]:
    """The flags of an ``Instrument Flag A,H`` comment; ``()`` for any other comment."""
    stripped = text.strip()
    if not stripped.lower().startswith(_COMMENT_PREFIX):
        return ()
    return split_flags([stripped[len(_COMMENT_PREFIX):]])


def range_hook(ctx: ResultContext) -> str:
    """R-6 without the range-set name."""
    return reference_range(ctx.result.reference_range, ctx.delimiters)


def flags_hook(ctx: ResultContext) -> tuple[str, ...]:
    """R-7 split on commas, plus the flags of an ``Instrument Flag`` comment after the R."""
    found = list(split_flags(_astm_generic.flags(ctx)))
    for comment in ctx.comments:
        for flag in comment_flags(ctx.delimiters.text(comment.text)):
            if flag not in found:
                found.append(flag)
    return tuple(found)




SPEC = DriverSpec(
    name="erba-xl",
    description="Erba XL-series chemistry (ASTM, backquote repeat delimiter), test code R-3.4",
    sample_id=_astm_generic.sample_id,
    test_code=_astm_generic.test_code,
    reference_range=range_hook,
    flags=flags_hook,
    flag_map=FLAG_MAP,
    default_status="F",
    is_qc=_astm_generic.qc_by_processing_or_action,
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    tcp_role=TcpRole.SERVER,
    query_style=QueryStyle.NONE,
    models="Erba XL-640, XL-1000 (XL series)",
    tested_with="corpus erba_2 (nishishailesh/elitepro_astm), erba_1 (nishishailesh/astm_general)",
)
