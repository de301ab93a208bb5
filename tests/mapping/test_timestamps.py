"""Analyzer timestamps in the analyzer's zone; bad ones reported, never fatal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from lis_gateway.timestamps import parse_timestamp

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize(("raw", "expected"), [
    ("20240506070809", datetime(2024, 5, 6, 7, 8, 9, tzinfo=HCM)),
    ("202405060708", datetime(2024, 5, 6, 7, 8, tzinfo=HCM)),  # Pentra: no seconds
    ("20240831 16:40.19", datetime(2024, 8, 31, 16, 40, 19, tzinfo=HCM)),  # Tisenc
    ("20240831 15:45:22", datetime(2024, 8, 31, 15, 45, 22, tzinfo=HCM)),
    ("20230511164516.31+0530", datetime(2023, 5, 11, 16, 45, 16, 310000,
                                        tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("20240506", datetime(2024, 5, 6, tzinfo=HCM)),
])
def test_forms_seen_in_the_field(raw: str, expected: datetime) -> None:
    """Each form is read as the analyzer meant it, in its zone unless it names an offset."""
    parsed, why = parse_timestamp(raw, "Asia/Ho_Chi_Minh")
    assert (parsed, why) == (expected, "")


@pytest.mark.parametrize("raw", ["18991230", "20240000", "2024", "garbage", "20241332"])
def test_unreadable_dates_are_reported_not_raised(raw: str) -> None:
    """Null, invalid and unknown dates give None and a reason naming the raw text."""
    parsed, why = parse_timestamp(raw, "Asia/Ho_Chi_Minh")
    assert parsed is None and repr(raw) in why


def test_vendor_formats_are_driver_supplied() -> None:
    """Spotchem's yy/mm/dd and VIDAS's MM/DD/YY come from the driver's format list."""
    parsed, _ = parse_timestamp("24/10/29 13:08", "Asia/Ho_Chi_Minh",
                                formats=("%y/%m/%d %H:%M",))
    assert parsed == datetime(2024, 10, 29, 13, 8, tzinfo=HCM)


def test_empty_is_not_a_problem() -> None:
    """No timestamp sent: no value and no complaint."""
    assert parse_timestamp("  ", "UTC") == (None, "")
