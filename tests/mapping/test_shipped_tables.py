"""The mapping tables shipped in mappings/ load cleanly and belong to real drivers."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

import drivers
from lis_gateway.mapping import MappingEntry, load_table, ucum_check

MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
TABLES = sorted(p.stem for p in MAPPINGS.glob("*.csv") if not p.name.endswith(".ranges.csv"))
UNITS = ucum_check()
#: A row to vary in the negative checks.
EXAMPLE = MappingEntry("X", "X", "", "", "", "X", "X", "", "", Decimal(1), Decimal(0), None,
                       None, None, None, None)


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


# --- LOINC codes against the reviewed reference -----------------------------------------

#: The reviewed LOINC reference: every code a shipped table uses, with its long common name
#: and the parts of its fully specified name (mappings/README.md says where each was seen).
#: It sits in a subdirectory so that no loader takes it for a driver's table.
LOINC_REFERENCE = MAPPINGS / "reference" / "loinc.csv"
REFERENCE_COLUMNS = ("loinc", "long_common_name", "component", "property", "time", "system",
                     "scale", "method", "source")

#: UCUM unit reported -> the LOINC properties a code for such a result may have. A unit a
#: table uses with a LOINC code must be listed here: that is the point of the check.
UNIT_PROPERTIES: dict[str, frozenset[str]] = {
    "mmol/L": frozenset({"SCnc"}),
    "umol/L": frozenset({"SCnc"}),
    "mg/dL": frozenset({"MCnc"}),
    "mg/L": frozenset({"MCnc"}),
    "g/L": frozenset({"MCnc"}),
    "g/dL": frozenset({"MCnc"}),
    "ng/mL": frozenset({"MCnc"}),
    "ng/dL": frozenset({"MCnc"}),
    "ug/dL": frozenset({"MCnc"}),
    "pg/mL": frozenset({"MCnc"}),
    "U/L": frozenset({"CCnc"}),
    "u[IU]/mL": frozenset({"ACnc"}),
    "m[IU]/mL": frozenset({"ACnc"}),
    "[IU]/L": frozenset({"ACnc"}),
    "[arb'U]/mL": frozenset({"ACnc"}),
    "10*9/L": frozenset({"NCnc"}),
    "10*12/L": frozenset({"NCnc"}),
    "%": frozenset({"NFr", "VFr", "MFr", "Ratio"}),
    "fL": frozenset({"EntVol"}),
    "pg": frozenset({"EntMass"}),
}
#: A row without a unit reports a qualitative result (detected, negative, ...).
QUALITATIVE_PROPERTIES = frozenset({"PrThr", "Prid", "Type", "Imp", "Find"})
QUALITATIVE_SCALES = frozenset({"Ord", "Nom", "OrdQn"})

#: Table -> the LOINC systems its results may come from: the haematology analyzers measure
#: whole blood (and red-cell indices, system RBC), the chemistry and immunoassay analyzers
#: serum or plasma. A table not listed here fails the check until someone decides.
TABLE_SYSTEMS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("sysmex-xn", "mindray-bc", "horiba-yumizen"),
                    frozenset({"Bld", "RBC"})),
    **dict.fromkeys(("roche-cobas", "abbott-architect", "beckman-access", "beckman-au",
                     "mindray-bs", "erba-xl", "biosystems-ba", "snibe-maglumi"),
                    frozenset({"Ser/Plas", "Ser", "Plas"})),
    # the shipped rows are the HEMA580 reticulocyte results; Atellica CH/IM rows would be
    # serum or plasma
    "siemens-atellica": frozenset({"Bld", "RBC", "Ser/Plas", "Ser", "Plas"}),
    "cepheid-genexpert": frozenset({"XXX", "Spt"}),
}


def loinc_reference() -> dict[str, dict[str, str]]:
    """The reference file, by LOINC code."""
    import csv
    import io

    text = LOINC_REFERENCE.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == REFERENCE_COLUMNS
    rows = list(reader)
    by_code = {row["loinc"]: row for row in rows}
    assert len(by_code) == len(rows), "a LOINC code appears twice in the reference"
    return by_code


def loinc_problems(table: str, entry: MappingEntry,
                   reference: dict[str, dict[str, str]]) -> list[str]:
    """Why the row's LOINC code cannot be right for the row (empty: plausible)."""
    term = reference.get(entry.loinc)
    if term is None:
        return [f"{entry.loinc} is not in {LOINC_REFERENCE.name}: confirm it and add it"]
    where = f"{table} {entry.analyzer_code!r} ({entry.loinc} {term['long_common_name']})"
    problems = []
    if entry.unit_ucum:
        allowed = UNIT_PROPERTIES.get(entry.unit_ucum)
        if allowed is None:
            problems.append(f"{where}: unit {entry.unit_ucum!r} is not in UNIT_PROPERTIES")
        elif term["property"] not in allowed:
            problems.append(f"{where}: a {entry.unit_ucum} result cannot be LOINC property "
                            f"{term['property']} (expected {'/'.join(sorted(allowed))})")
        if term["scale"] != "Qn":
            problems.append(f"{where}: a result in {entry.unit_ucum} is quantitative, the "
                            f"code's scale is {term['scale']}")
    elif (term["property"] not in QUALITATIVE_PROPERTIES
          or term["scale"] not in QUALITATIVE_SCALES):
        problems.append(f"{where}: a row without a unit is qualitative, the code is "
                        f"{term['property']} {term['scale']}")
    systems = TABLE_SYSTEMS.get(table)
    if systems is None:
        problems.append(f"{table}: no TABLE_SYSTEMS entry")
    elif term["system"] not in systems:
        problems.append(f"{where}: system {term['system']} is not a specimen of this "
                        f"analyzer ({'/'.join(sorted(systems))})")
    return problems


def test_the_loinc_reference_is_not_a_table() -> None:
    """The reference lives below mappings/, where the loaders look for no table."""
    assert LOINC_REFERENCE.is_file()
    assert LOINC_REFERENCE.parent != MAPPINGS
    assert "loinc" not in TABLES
    assert load_table([MAPPINGS], "loinc", units=UNITS) is None


def test_the_loinc_reference_is_well_formed() -> None:
    """Each code has its check digit, a name, the parts of its name and where it was seen."""
    from lis_gateway.mapping import loinc_check_digit

    for code, row in loinc_reference().items():
        number, _, digit = code.partition("-")
        assert number.isdigit() and digit.isdigit(), code
        assert loinc_check_digit(number) == int(digit), code
        for column in ("long_common_name", "component", "property", "time", "system",
                       "scale", "source"):
            assert row[column].strip(), f"{code}: {column} is empty"
        assert row["time"] == "Pt", code


@pytest.mark.parametrize("name", TABLES)
def test_every_loinc_code_is_reviewed_and_fits_its_row(name: str) -> None:
    """Each LOINC code is in the reference, and agrees with the row: the unit's kind
    (mass, substance, catalytic, arbitrary or number concentration, fraction, entitic
    volume or mass) with the code's property, and the analyzer's specimen with its system."""
    reference = loinc_reference()
    table = load_table([MAPPINGS], name, units=UNITS)
    assert table is not None
    problems = [p for entry in table.entries.values() if entry.loinc
                for p in loinc_problems(name, entry, reference)]
    assert problems == []


@pytest.mark.parametrize(("table", "row", "expected"), [
    ("roche-cobas", {"loinc": "2345-7", "unit_ucum": "mmol/L"},
     "a mmol/L result cannot be LOINC property MCnc"),
    ("biosystems-ba", {"loinc": "14749-6", "unit_ucum": "mg/dL"},
     "a mg/dL result cannot be LOINC property SCnc"),
    ("sysmex-xn", {"loinc": "1751-7", "unit_ucum": "g/L"},
     "system Ser/Plas is not a specimen of this analyzer"),
    ("roche-cobas", {"loinc": "718-7", "unit_ucum": "g/L"},
     "system Bld is not a specimen of this analyzer"),
    ("sysmex-xn", {"loinc": "770-8", "unit_ucum": "10*9/L"},
     "a 10*9/L result cannot be LOINC property NFr"),
    ("cepheid-genexpert", {"loinc": "38379-4", "unit_ucum": "%"},
     "is quantitative, the code's scale is Ord"),
    ("erba-xl", {"loinc": "2160-0", "unit_ucum": ""},
     "a row without a unit is qualitative"),
    ("roche-cobas", {"loinc": "2160-1", "unit_ucum": "mg/dL"},
     "2160-1 is not in loinc.csv"),
])
def test_a_wrong_loinc_code_is_caught(table: str, row: dict[str, str], expected: str) -> None:
    """The check names what is wrong: a mass code on a substance row, a serum code on a
    whole-blood table, a count code on a percentage, a qualitative code on a number..."""
    entry = dataclasses.replace(EXAMPLE, **row)
    problems = loinc_problems(table, entry, loinc_reference())
    assert any(expected in p for p in problems), problems
