"""Analyzer values: comparator, exact number, text; the raw string kept."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lis_gateway.values import parse_value


@pytest.mark.parametrize(("raw", "comparator", "number", "text", "empty"), [
    ("  5.5", "", Decimal("5.5"), "", False),  # Sysmex XP leading spaces
    ("7,41", "", Decimal("7.41"), "", False),  # EUROIMMUN decimal comma
    ("<15", "<", Decimal("15"), "", False),  # VITROS censored
    (">8", ">", Decimal("8"), "", False),
    ("<=0.5", "<=", Decimal("0.5"), "", False),
    ("-----", "", None, "", True),  # Pentra: cannot compute
    ("NA", "", None, "", True),  # Erba
    ("No Result", "", None, "", True),  # VITROS
    (".....", "", None, "", True),  # Radiometer
    ("NOT DETECTED^", "", None, "NOT DETECTED", False),  # GeneXpert
    ("Positif", "", None, "Positif", False),  # VIDAS
    ("1.08^", "", Decimal("1.08"), "", False),  # Maglumi trailing component
    ("4.208448^^^^", "", Decimal("4.208448"), "", False),  # Mindray
    ("-58.4", "", Decimal("-58.4"), "", False),  # Radiometer below range
    ("1:128", "", None, "1:128", False),  # titre stays text
])
def test_field_forms(raw: str, comparator: str, number: Decimal | None, text: str,
                     empty: bool) -> None:
    """Every value form seen in the corpus parses as a technician would read it."""
    value = parse_value(raw)
    assert (value.comparator, value.number, value.text, value.empty) == (
        comparator, number, text, empty)
    assert value.raw == raw


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                   min_value=Decimal("-1e6"), max_value=Decimal("1e6")))
def test_decimal_numbers_are_exact(number: Decimal) -> None:
    """A number written with a point or a comma comes back exactly (no float drift)."""
    text = format(number, "f")
    assert parse_value(text).number == number
    assert parse_value(text.replace(".", ",")).number == number
