"""atheris harness: analyzer values and timestamps (comparators, decimal commas, no-value
words, odd dates, time zones).

Run by ``tests/fuzz/test_atheris.py`` (bounded in time); by hand:
``.venv/bin/python tests/fuzz/fuzz_values.py -max_total_time=60 CORPUS_DIR``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["lis_gateway"]):
    from _harness import options

    from lis_gateway.timestamps import parse_timestamp
    from lis_gateway.values import parse_value

ZONES = ["Asia/Ho_Chi_Minh", "UTC", "Europe/Berlin", "America/New_York"]
FORMATS = ("%y/%m/%d %H:%M", "%d.%m.%Y %H:%M:%S", "%Y-%m-%dT%H:%M")


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as a value and as a timestamp (UTF-8, else Latin-1, as links do).

    The last two bytes choose the component separator and the analyzer's zone.
    """
    body, (separator_choice, zone_choice) = options(data, 2)
    separator = ["^", "", "&"][separator_choice % 3]
    zone = ZONES[zone_choice % len(ZONES)]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    value = parse_value(text, component_separator=separator)
    assert value.raw == text
    if value.number is not None:
        assert value.number.is_finite()
    when, reason = parse_timestamp(text, zone, formats=FORMATS)
    if when is None:
        assert reason or not text.strip(), text
    else:
        assert when.tzinfo is not None


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
