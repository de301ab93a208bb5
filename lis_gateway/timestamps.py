"""Analyzer timestamps: the formats seen in the field, read in the analyzer's time zone.

ASTM carries no time zone and many HL7 analyzers send none either, so the
driver's configured zone is attached. Forms seen (protocols.md §4.2)::

    20240506070809    YYYYMMDDHHMMSS (usual)         202405060708     no seconds (Pentra)
    20240831 16:40.19 / 20240831 15:45:22            (Tisenc HL7)
    20230511164516.31+0530                            fractional seconds and offset (HL7)
    18991230 / 20240000                               null or invalid dates (Phadia, Sphera)
    24/10/29 13:08 (yy/mm/dd), 10/25/24 (MM/DD/YY), 30-08-2024 (dd-mm-yyyy)  (vendor formats)

A timestamp that cannot be read is never fatal: :func:`parse_timestamp`
returns None and a reason, the raw string stays on the result, and the
receive time stands in (the caller decides).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_HL7 = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?"
                  r"(?:([+-])(\d{2})(\d{2}))?$")
_SPACED = re.compile(r"^(\d{4})(\d{2})(\d{2})[ T](\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?$")
#: Dates that mean "no date" (Delphi/OLE zero date, all zeros).
NULL_DATES = frozenset({"18991230", "18991231", "00000000", "19000101"})


def parse_timestamp(raw: str, zone: str, *, formats: tuple[str, ...] = ()
                    ) -> tuple[datetime | None, str]:
    """Read an analyzer timestamp.

    Args:
        raw: as received.
        zone: the analyzer clock's IANA zone (used when the text carries no offset).
        formats: extra ``strptime`` formats of the family (``%y/%m/%d %H:%M`` ...).

    Returns:
        (aware datetime, "") or (None, reason); an empty string gives (None, "").
    """
    text = raw.strip()
    if not text:
        return None, ""
    if text[:8] in NULL_DATES:
        return None, f"{raw!r} is a null date"
    tz = ZoneInfo(zone)
    m = _HL7.match(text)
    if m is not None:
        return _from_parts(m, tz, raw)
    m = _SPACED.match(text)
    if m is not None:
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        return _build(raw, tz, y, mo, d, h, mi, s)
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz), ""
        except ValueError:
            continue
    return None, f"{raw!r} is not a timestamp this driver can read"


def _from_parts(m: re.Match[str], tz: ZoneInfo, raw: str) -> tuple[datetime | None, str]:
    year, month, day, hour, minute, second, fraction, sign, oh, om = m.groups()
    if month is None or day is None:
        return None, f"{raw!r} has no day"
    parsed, why = _build(raw, tz, int(year), int(month), int(day), int(hour or 0),
                         int(minute or 0), int(second or 0))
    if parsed is None:
        return None, why
    if fraction:
        parsed = parsed.replace(microsecond=int(fraction.ljust(6, "0")))
    if sign:
        # UTC offsets in use run from -12:00 to +14:00; anything else is not a zone
        # (and timezone() refuses a day or more)
        if int(om) >= 60 or timedelta(hours=int(oh), minutes=int(om)) > timedelta(hours=14):
            return None, f"{raw!r} has an impossible UTC offset"
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        parsed = parsed.replace(tzinfo=timezone(offset))
    return parsed, ""


def _build(raw: str, tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0,
           minute: int = 0, second: int = 0) -> tuple[datetime | None, str]:
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz), ""
    except ValueError as exc:
        return None, f"{raw!r} is not a valid date ({exc})"
