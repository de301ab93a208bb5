"""The shipped mapping tables, loaded through the real loader (which validates them)."""

from __future__ import annotations

from pathlib import Path

from lis_gateway.mapping import MappingTable, load_table

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def shipped(name: str) -> MappingTable:
    """``mappings/<name>.csv`` (and its ranges), loaded and validated."""
    table = load_table([MAPPINGS], name)
    assert table is not None, f"mappings/{name}.csv is missing"
    return table
