"""Result values as analyzers write them: comparator, exact number, text; the raw kept.

Seen in the field (protocols.md §4.2): ``  5.5`` (leading spaces), ``7,41``
(decimal comma), ``<15`` ``>8`` ``<=0.5`` (censored), ``-----`` ``NA``
``No Result`` ``.....`` (no value), ``NOT DETECTED^`` ``Positif`` (text),
``1.08^`` ``4.208448^^^^`` (trailing empty components), ``-58.4`` (negative),
``1:128`` (titre, kept as text). Numbers are :class:`decimal.Decimal`, never
float, so conversions do not drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

#: Strings that mean "no value" (compared case-insensitively, spaces squeezed).
NO_VALUE = frozenset({"", "-----", "----", "---", "--", "-", "na", "n/a", "no result",
                      ".....", "....", "...", "***", "*****", "error", "err"})

_NUMBER = re.compile(r"^(?P<cmp><=|>=|<|>|=)?\s*(?P<num>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+))$")


@dataclass(frozen=True, slots=True)
class ParsedValue:
    """One result value.

    Attributes:
        raw: exactly as received (escapes already decoded).
        number: the numeric value, or None.
        comparator: ``<``, ``>``, ``<=``, ``>=`` for censored values, else ``""``.
        text: the value as text when it is not numeric (trimmed), else ``""``.
        empty: the analyzer said "no value" (``-----``, ``NA``, ...).
    """

    raw: str
    number: Decimal | None
    comparator: str
    text: str
    empty: bool

    @property
    def is_numeric(self) -> bool:
        """A number (possibly censored) was found."""
        return self.number is not None


def parse_value(raw: str, *, component_separator: str = "^") -> ParsedValue:
    """Split an analyzer value into comparator, number and text.

    Args:
        raw: the value field as received, escapes decoded.
        component_separator: trailing empty components (``1.08^``) are ignored.

    Returns:
        The parsed value; never raises.
    """
    text = raw.strip()
    if component_separator:
        parts = [p.strip() for p in text.split(component_separator)]
        non_empty = [p for p in parts if p]
        text = non_empty[0] if len(non_empty) == 1 else text.strip(component_separator + " ")
    if " ".join(text.lower().split()) in NO_VALUE:
        return ParsedValue(raw, None, "", "", True)
    m = _NUMBER.match(text)
    if m is not None:
        digits = m.group("num").replace(",", ".")
        try:
            number = Decimal(digits)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            number = None
        if number is not None and number.is_finite():
            cmp = m.group("cmp") or ""
            return ParsedValue(raw, number, "" if cmp == "=" else cmp, "", False)
    return ParsedValue(raw, None, "", text, False)
