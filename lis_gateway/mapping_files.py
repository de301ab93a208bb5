"""The running gateway's mapping tables, and writing a fixed row to the site's table file.

:class:`LiveTables` holds the table of each driver as loaded at start; the
store sinks ask it for the current table at every message, so a table
fixed from the web app is used for the next message without a restart.

:meth:`LiveTables.prepare_row` and :func:`write_table` change a table on
disk safely:

* The row is edited in the file the table is loaded from when that file is
  in a site directory (``[mappings] directories``). A table shipped with
  lis-gateway is never edited in place: it is copied, with its ranges file,
  into the first site directory and edited there (site directories come
  first when tables load, so the copy wins from now on). Without a site
  directory nothing is written.
* The edit is refused when the file changed since the person saw it (the
  version they saw is compared with the file's).
* The whole new table is validated (:func:`lis_gateway.mapping.parse_table`,
  every problem with file, line and column) before anything is written;
  then each file is written to a temporary file in the same directory,
  flushed to disk and renamed over the old one (``os.replace``), so a
  reader sees the old table or the new one, never half of one.
* After the write the table is loaded again from the directories exactly
  as at start (:func:`lis_gateway.mapping.load_table`): what the gateway
  uses is what a restart would load.

Callers serialise edits with :attr:`LiveTables.lock` (edits run on the
database pool's threads).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lis_gateway.mapping import (
    MappingTable,
    UnitCheck,
    load_table,
    parse_table,
    table_version,
    ucum_check,
)
from lis_gateway.mapping_edit import RowEdit, edit_row


class TableWriteError(Exception):
    """The table cannot be written (no site directory, changed meanwhile, ...)."""


@dataclass(frozen=True, slots=True)
class TableFile:
    """Where a table is read from and where an edit of it goes.

    Attributes:
        name: the table's name (the driver's ``table_name``).
        source: the ``.csv`` it loads from now (None: no directory has it).
        target: the ``.csv`` an edit writes (None: no site directory).
    """

    name: str
    source: Path | None
    target: Path | None

    @property
    def copied(self) -> bool:
        """An edit starts the site's own copy of the table."""
        return self.target is not None and self.source != self.target


@dataclass(frozen=True, slots=True)
class PreparedEdit:
    """A validated edit, not yet written.

    Attributes:
        file: where it goes.
        edit: the row change and the new file's bytes.
        table: the new table as validated.
        old_data, old_ranges: the target's files before (None: absent), to restore.
        ranges: the ranges file written next to the target (None: none needed).
        old_version: the version the edit was based on.
    """

    file: TableFile
    edit: RowEdit
    table: MappingTable
    old_data: bytes | None
    old_ranges: bytes | None
    ranges: bytes | None
    old_version: str


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None and path.is_file() else None


def _ranges_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name[:-len(".csv")] + ".ranges.csv")


class LiveTables:
    """The mapping tables in use, by table name (None: no table).

    Args:
        tables: as loaded at start (:func:`lis_gateway.ingest.load_tables`).
        directories: the directories tables load from, site ones first.
        site_directories: those an edit may write into (the first gets copies).
        units: the UCUM check (built on first use when None).
    """

    def __init__(self, tables: Mapping[str, MappingTable | None],
                 directories: Sequence[Path], site_directories: Sequence[Path], *,
                 units: UnitCheck | None = None) -> None:
        self._tables = dict(tables)
        self.directories = tuple(directories)
        self.site_directories = tuple(site_directories)
        self._units = units
        #: held while a table is read, checked and written
        self.lock = threading.Lock()

    def get(self, name: str) -> MappingTable | None:
        """The table in use (None: no table)."""
        return self._tables.get(name)

    def all(self) -> dict[str, MappingTable | None]:
        """Every table in use, by name (a copy)."""
        return dict(self._tables)

    def replace(self, name: str, table: MappingTable) -> None:
        """Use ``table`` from now on."""
        self._tables[name] = table

    def units(self) -> UnitCheck:
        """The UCUM check used to validate tables."""
        if self._units is None:
            self._units = ucum_check()
        return self._units

    def locate(self, name: str) -> TableFile:
        """Where table ``name`` is read from and where an edit would go."""
        source = next((d / f"{name}.csv" for d in self.directories
                       if (d / f"{name}.csv").is_file()), None)
        site = [d.resolve() for d in self.site_directories]
        if source is not None and source.parent.resolve() in site:
            return TableFile(name, source, source)
        target = (self.site_directories[0] / f"{name}.csv") if self.site_directories else None
        return TableFile(name, source, target)

    def on_disk(self, name: str) -> tuple[TableFile, bytes | None, str]:
        """The table's file as it is now: where, its bytes (None: none), its version
        ("" without a file); what an edit starts from."""
        file = self.locate(name)
        data = _read(file.source)
        if data is None:
            return file, None, ""
        assert file.source is not None
        return file, data, table_version(data, _read(_ranges_path(file.source)))

    def prepare_row(self, name: str, row: Mapping[str, str], *, based_on: str
                    ) -> PreparedEdit:
        """Edit the row and validate the whole table; nothing is written.

        Args:
            name: the table.
            row: column -> cell (``analyzer_code`` names the row).
            based_on: the table version the person saw ("" when there was no table).

        Raises:
            TableWriteError: no site directory, or the table changed since.
            lis_gateway.mapping_edit.RowEditError: the row cannot be written.
            lis_gateway.mapping.MappingTableError: the new table has problems.
        """
        file, data, now = self.on_disk(name)
        if file.target is None:
            raise TableWriteError("no site mapping directory is configured ([mappings] "
                                  "directories); the tables shipped with lis-gateway are "
                                  "not edited")
        source_ranges = _read(_ranges_path(file.source)) if file.source is not None else None
        if now != based_on:
            raise TableWriteError(f"table {name} changed since it was shown (version "
                                  f"{now[:12] or 'none'}, not {based_on[:12] or 'none'}); "
                                  "reload the page")
        old_data, old_ranges = _read(file.target), _read(_ranges_path(file.target))
        ranges = old_ranges if not file.copied or old_ranges is not None else source_ranges
        edit = edit_row(data, row)
        table = parse_table(name, edit.data, ranges, file=str(file.target),
                            ranges_file=str(_ranges_path(file.target)), units=self.units())
        return PreparedEdit(file, edit, table, old_data, old_ranges,
                            ranges if ranges is not None and ranges != old_ranges else None,
                            based_on)

    def reload(self, name: str) -> MappingTable | None:
        """Load table ``name`` from the directories as at start (not yet in use).

        Raises:
            lis_gateway.mapping.MappingTableError: the files on disk have problems.
        """
        return load_table(self.directories, name, units=self.units())


def write_table(prepared: PreparedEdit) -> None:
    """Write a prepared edit: the ranges file first (when one is copied), then the table.

    Raises:
        OSError: a file could not be written (the old one is still in place).
    """
    target = prepared.file.target
    assert target is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    if prepared.ranges is not None:
        replace_file(_ranges_path(target), prepared.ranges)
    replace_file(target, prepared.edit.data)


def restore_table(prepared: PreparedEdit) -> None:
    """Put back what :func:`write_table` replaced (the audit row was not committed).

    Raises:
        OSError: a file could not be written.
    """
    target = prepared.file.target
    assert target is not None
    if prepared.old_data is None:
        target.unlink(missing_ok=True)
    else:
        replace_file(target, prepared.old_data)
    if prepared.ranges is not None:
        ranges = _ranges_path(target)
        if prepared.old_ranges is None:
            ranges.unlink(missing_ok=True)
        else:
            replace_file(ranges, prepared.old_ranges)


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, flush it to disk, rename it
    over ``path`` (atomic), then flush the directory. The old file's mode is kept.

    Raises:
        OSError: nothing was replaced (the temporary file is removed).
    """
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
