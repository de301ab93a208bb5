"""Corpus-derived HL7 captures (tests/fixtures/hl7, sources in its README) through the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import drivers
from lis_gateway.capture import decode_capture
from lis_gateway.hl7.message import Hl7Message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
ALL = sorted(p.name[: -len(".bin")] for p in FIXTURES.glob("*.bin"))
GENERIC = drivers.get("generic-hl7")
KEYS = ("sample_id", "test", "value", "unit", "reference_range", "flags", "status",
        "completed_at", "instrument")


def load(name: str) -> tuple[bytes, dict]:
    """The fixture's bytes and its hand-derived expectations."""
    return ((FIXTURES / f"{name}.bin").read_bytes(),
            json.loads((FIXTURES / f"{name}.expected.json").read_text()))


def test_every_hl7_family_of_the_corpus_is_covered() -> None:
    """Mindray, Snibe, BioSystems, Wondfo, Tisenc and Radiometer captures are all present."""
    families = {name.split("_")[0] for name in ALL}
    assert {"mindray", "snibe", "biosystems", "wondfo", "tisenc", "radiometer"} <= families


@pytest.mark.parametrize("name", ALL)
def test_fixture_values(name: str) -> None:
    """Messages, message types and every result row come out as expected."""
    data, expected = load(name)
    report = decode_capture(data, GENERIC)
    messages = [m for m in report.messages if isinstance(m, Hl7Message)]
    assert len(messages) == expected["messages"]
    assert [m.delimiters.text(m.msh[9]) for m in messages] == expected["message_types"]
    rows = [{k: row.to_dict()[k] for k in KEYS} for _, row in report.rows]
    assert rows == expected["results"]


@pytest.mark.parametrize("name", ALL)
def test_fixture_byte_by_byte_gives_the_same_rows(name: str) -> None:
    """Splitting the capture into one-byte reads changes nothing (recorded as a wire file)."""
    from lis_gateway.wire import WireRecorder

    data, expected = load(name)
    import io

    buf = io.BytesIO()
    rec = WireRecorder(buf, "t", 0.0)
    for i in range(len(data)):
        rec.record("rx", data[i:i + 1], i * 1e-4)
    report = decode_capture(buf.getvalue(), GENERIC)
    assert len(report.rows) == len(expected["results"])


@pytest.mark.parametrize(("name", "needle"), [
    ("mindray_4", "stray bytes before VT"),
    ("snibe_1", "missing FS"),
    ("tisenc_1", "missing FS"),
    ("biosystems_4", "incomplete message"),
])
def test_tolerated_deviations_are_reported(name: str, needle: str) -> None:
    """Each real-world framing quirk is accepted and named in the problems."""
    data, _ = load(name)
    report = decode_capture(data, GENERIC)
    assert any(needle in p for p in report.problems), report.problems


def test_utf8_under_an_ascii_declaration_is_kept_intact() -> None:
    """Tisenc declares ASCII and sends UTF-8: μIU/mL survives."""
    data, _ = load("tisenc_1")
    units = [row.unit for _, row in decode_capture(data, GENERIC).rows]
    assert "μIU/mL" in units


def test_truncated_message_gives_no_results_and_keeps_its_bytes() -> None:
    """The 1,023-byte cut message is reported as incomplete, never parsed into results."""
    data, _ = load("biosystems_4")
    report = decode_capture(data, GENERIC)
    assert report.rows == [] and report.messages == []
    assert any("1023 bytes kept" in p for p in report.problems)


def test_msh18_declares_the_character_set() -> None:
    """MSH-18 (not MSH-19) names the codec: Vietnamese CP1258 text (base letters with
    combining tone marks, as CP1258 writes them) comes out right."""
    import unicodedata

    from lis_gateway.hl7.message import parse_message

    written = "Nguy\u00ea\u0303n Th\u1ecb Lan".replace("\u1ecb", "i\u0323")  # ê + ~, i + dot
    raw = ("MSH|^~\\&|LIS|LAB|HIS|BV|20261122||ORU^R01|1|P|2.3.1||||||CP1258\r"
           f"PID|1||BN1||{written}\r").encode("cp1258")
    msg = parse_message(raw, default_encoding="latin-1")
    assert msg.encoding == "cp1258"
    pid = msg.first("PID")
    assert pid is not None
    assert unicodedata.normalize("NFC", msg.text(pid[5])) == "Nguyễn Thị Lan"
