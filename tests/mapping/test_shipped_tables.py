"""The mapping tables shipped in mappings/ load cleanly and belong to real drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from lis_gateway.mapping import load_table, ucum_check

MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
TABLES = sorted(p.stem for p in MAPPINGS.glob("*.csv") if not p.name.endswith(".ranges.csv"))
UNITS = ucum_check()


def test_every_vendor_driver_ships_a_table() -> None:
    """Each driver except the generic ones has a table named after it."""
    vendor = {name for name in drivers.REGISTRY if not name.startswith("generic-")}
    assert vendor <= set(TABLES), vendor - set(TABLES)


@pytest.mark.parametrize("name", TABLES)
def test_table_loads_without_problems(name: str) -> None:
    """UCUM units, LOINC check digits, numbers, ranges: the whole table is valid."""
    table = load_table([MAPPINGS], name, units=UNITS)
    assert table is not None
    assert name in drivers.REGISTRY, f"{name}.csv belongs to no driver"


@pytest.mark.parametrize("name", TABLES)
def test_names_are_nfc_and_codes_unique(name: str) -> None:
    """Vietnamese names are NFC (composed), so matching and display agree."""
    import unicodedata

    table = load_table([MAPPINGS], name, units=UNITS)
    assert table is not None
    for entry in table.entries.values():
        assert unicodedata.is_normalized("NFC", entry.name_vi)
