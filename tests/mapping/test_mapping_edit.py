"""Fixing one row of a mapping table: the CSV edit (pure) and the safe write to the site's file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lis_gateway.mapping import MappingTableError, load_table, parse_table, table_version
from lis_gateway.mapping_edit import NEW_TABLE_COLUMNS, RowEditError, edit_row, find_row
from lis_gateway.mapping_files import LiveTables, TableWriteError, restore_table, write_table

from .test_mapping import HEADER, RANGES

ROWS = ('HGB,HGB,,H02,718-7,Huyết sắc tố,Hemoglobin,g/dL,g/L,10,0,0,50,200,110,170\r\n'
        '"GLU",GLU,,,2345-7,"Glucose, máu",Glucose,mg/dL,mmol/L,0.0555,0,1,2.5,25,,\r\n')
FILE = "\ufeff".encode() + (HEADER.replace("\n", "\r\n") + ROWS).encode()
ALT = {"analyzer_code": "ALT", "local_code": "ALT", "loinc": "1742-6", "name_vi": "ALT",
       "name_en": "Alanine aminotransferase", "analyzer_unit": "U/L", "unit_ucum": "U/L"}


def units(unit: str) -> str | None:
    """A UCUM check that knows the units of these tests (the real one is slow to build)."""
    return None if unit in ("g/L", "g/dL", "mmol/L", "U/L", "mg/dL") else f"{unit!r} unknown"


def test_a_new_row_is_appended_and_nothing_else_changes() -> None:
    """The BOM, the CRLF line ends, the quoting of other rows stay; the row goes last."""
    edit = edit_row(FILE, ALT)
    assert edit.data == FILE + b"ALT,ALT,,,1742-6,ALT,Alanine aminotransferase,U/L,U/L,,,,,,,\r\n"
    assert edit.old_row is None and edit.line == 4
    table = parse_table("t", edit.data, units=units)
    assert table.lookup("ALT") is not None and table.lookup("GLU") is not None


def test_an_existing_row_is_replaced_in_place() -> None:
    """The row is found like lookup finds a code (case-insensitive); old and new are given."""
    row = dict(find_row(FILE, "glu") or {})
    assert row["name_vi"] == "Glucose, máu" and row["analyzer_unit"] == "mg/dL"
    row["analyzer_unit"] = "mmol/L"
    row["factor"] = "1"
    edit = edit_row(FILE, row)
    lines = edit.data.decode("utf-8-sig").split("\r\n")
    assert lines[2] == 'GLU,GLU,,,2345-7,"Glucose, máu",Glucose,mmol/L,mmol/L,1,0,1,2.5,25,,'
    assert lines[1].startswith("HGB,") and len(lines) == 4 and lines[3] == ""
    assert edit.old_row is not None and edit.old_row["analyzer_unit"] == "mg/dL"
    assert edit.new_row["factor"] == "1" and edit.line == 3


def test_a_new_table_gets_every_column() -> None:
    """Without a file the header lists every column, the optional service code too."""
    edit = edit_row(None, ALT)
    header, row, _ = edit.data.decode().split("\n")
    assert tuple(header.split(",")) == NEW_TABLE_COLUMNS and row.startswith("ALT,ALT,")
    assert parse_table("t", edit.data, units=units).lookup("ALT") is not None


@pytest.mark.parametrize("row,message", [
    ({"analyzer_code": " "}, "the analyzer code is required"),
    ({**ALT, "name_vi": "a\nb"}, "name_vi: a cell cannot span lines"),
    ({**ALT, "service_code": "01.0001.0001"}, "has no column service_code")])
def test_rows_that_cannot_be_written(row: dict[str, str], message: str) -> None:
    """No code, a multi-line cell, a column the file lacks: refused with why."""
    with pytest.raises(RowEditError, match=message):
        edit_row(FILE, row)


def site(tmp_path: Path) -> tuple[Path, Path]:
    """A shipped directory with table t and its ranges, and an empty site directory."""
    shipped, site_dir = tmp_path / "shipped", tmp_path / "site"
    shipped.mkdir()
    site_dir.mkdir()
    (shipped / "t.csv").write_bytes(FILE)
    (shipped / "t.ranges.csv").write_bytes(RANGES.replace(b"HBSAG,*,,,,,\xc3\x82m t\xc3\xadnh\n",
                                                          b""))
    return shipped, site_dir


def live(shipped: Path, site_dir: Path | None) -> LiveTables:
    """The live tables as the gateway starts them."""
    dirs = [d for d in (site_dir, shipped) if d is not None]
    return LiveTables({"t": load_table(dirs, "t", units=units)}, dirs,
                      [site_dir] if site_dir else [], units=units)


def test_a_shipped_table_is_copied_to_the_site_with_its_ranges(tmp_path: Path) -> None:
    """The shipped files stay as they were; the site gets the edited table and the ranges,
    and loading from the directories gives the new version."""
    shipped, site_dir = site(tmp_path)
    tables = live(shipped, site_dir)
    before = tables.get("t")
    assert before is not None
    prepared = tables.prepare_row("t", ALT, based_on=before.version)
    assert prepared.file.copied and prepared.old_data is None
    write_table(prepared)
    assert (shipped / "t.csv").read_bytes() == FILE
    assert (site_dir / "t.ranges.csv").read_bytes() == (shipped / "t.ranges.csv").read_bytes()
    reloaded = tables.reload("t")
    assert reloaded is not None and reloaded.version == prepared.table.version
    assert reloaded.version == table_version(prepared.edit.data,
                                             (shipped / "t.ranges.csv").read_bytes())
    hgb = reloaded.lookup("HGB")
    assert hgb is not None and hgb.ranges
    assert [p.name for p in site_dir.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_a_site_table_is_edited_in_place_and_can_be_restored(tmp_path: Path) -> None:
    """A table already in the site directory is rewritten there (mode kept); restoring
    puts the old bytes back."""
    shipped, site_dir = site(tmp_path)
    (site_dir / "t.csv").write_bytes(FILE)
    os.chmod(site_dir / "t.csv", 0o640)
    tables = live(shipped, site_dir)
    version = tables.on_disk("t")[2]
    prepared = tables.prepare_row("t", ALT, based_on=version)
    assert not prepared.file.copied and prepared.ranges is None
    write_table(prepared)
    assert b"ALT,ALT" in (site_dir / "t.csv").read_bytes()
    assert (site_dir / "t.csv").stat().st_mode & 0o777 == 0o640
    restore_table(prepared)
    assert (site_dir / "t.csv").read_bytes() == FILE


def test_an_invalid_row_writes_nothing_and_names_the_place(tmp_path: Path) -> None:
    """A wrong LOINC check digit and an unknown unit: every problem with file, line and
    column; the site directory stays empty."""
    shipped, site_dir = site(tmp_path)
    tables = live(shipped, site_dir)
    with pytest.raises(MappingTableError) as caught:
        tables.prepare_row("t", {**ALT, "loinc": "1742-5", "unit_ucum": "furlongs"},
                           based_on=tables.on_disk("t")[2])
    where = [str(p) for p in caught.value.problems]
    assert where == [f"{site_dir / 't.csv'}:4: column loinc: '1742-5' has a wrong check "
                     "digit (expected 6)",
                     f"{site_dir / 't.csv'}:4: column unit_ucum: 'furlongs' unknown"]
    assert list(site_dir.iterdir()) == []


def test_an_edit_based_on_an_old_version_or_without_a_site_is_refused(tmp_path: Path) -> None:
    """A table changed since the page was shown, or no site directory: nothing written."""
    shipped, site_dir = site(tmp_path)
    with pytest.raises(TableWriteError, match="changed since it was shown"):
        live(shipped, site_dir).prepare_row("t", ALT, based_on="0" * 64)
    no_site = live(shipped, None)
    with pytest.raises(TableWriteError, match="no site mapping directory"):
        no_site.prepare_row("t", ALT, based_on=no_site.on_disk("t")[2])
    assert list(site_dir.iterdir()) == []
