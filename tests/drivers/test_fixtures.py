"""Corpus-derived transcripts (tests/fixtures/astm, sources in its README) through the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import drivers
from lis_gateway.capture import decode_capture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
ALL = sorted(p.name[: -len(".bin")] for p in FIXTURES.glob("*.bin"))
CLEAN = [n for n in ALL if not json.loads((FIXTURES / f"{n}.expected.json").read_text())
         .get("problems")]
FRAMED = [n for n in CLEAN if (FIXTURES / f"{n}.bin").read_bytes()[:1] in (b"\x05", b"\x02")]
GENERIC = drivers.get("generic-astm")


def load(name: str) -> tuple[bytes, dict]:
    """The fixture's bytes and its hand-derived expectations."""
    return ((FIXTURES / f"{name}.bin").read_bytes(),
            json.loads((FIXTURES / f"{name}.expected.json").read_text()))


def rows_as_expected(report) -> list[dict]:
    """The decoded rows in the expectation files' shape."""
    keys = ("sample_id", "test", "value", "unit", "reference_range", "flags", "status",
            "completed_at")
    return [{k: row.to_dict()[k] for k in keys} for _, row in report.rows]


def test_fixture_set_covers_ten_families() -> None:
    """At least ten analyzer families are represented."""
    families = {name.split("_")[0] for name in ALL}
    assert len(families) >= 10, families


@pytest.mark.parametrize("name", CLEAN)
def test_clean_fixture_values(name: str) -> None:
    """Every result of a clean transcript comes out with the expected values."""
    data, expected = load(name)
    report = decode_capture(data, GENERIC)
    assert len(report.messages) == expected["messages"]
    assert rows_as_expected(report) == expected["results"]
    assert not [p for p in report.problems if p.startswith("error")]
    assert report.incomplete == []


@pytest.mark.parametrize("name", FRAMED)
def test_clean_fixture_byte_by_byte(name: str) -> None:
    """Feeding a transcript through a live link one byte at a time gives the same rows."""
    from lis_gateway.astm.assembler import AstmMessage, MessageAssembler
    from lis_gateway.astm.events import FrameAccepted, TransferEnded
    from lis_gateway.astm.link import LinkConnection

    data, expected = load(name)
    link = LinkConnection(GENERIC.link_config())
    asm = MessageAssembler()
    messages: list[AstmMessage] = []
    for i in range(len(data)):
        link.receive_data(data[i:i + 1], i * 0.001)
        for event in link.events():
            if isinstance(event, FrameAccepted):
                messages += asm.add_text(event.text, block_end=event.final, offset=event.offset)
            elif isinstance(event, TransferEnded):
                messages += asm.end_transfer()
    assert len(messages) == expected["messages"]
    from drivers.extract import extract_results

    got = [r.value for m in messages for r in extract_results(m, GENERIC)]
    assert got == [r["value"] for r in expected["results"]]


def test_bad_checksum_frame_is_reported_with_its_offset() -> None:
    """roche_4: the frame with the edited body is rejected, its position given."""
    data, _ = load("roche_4_bad_checksum")
    report = decode_capture(data, GENERIC)
    errors = [p for p in report.problems if p.startswith("error")]
    assert len(errors) == 1
    assert "frame 3 rejected: bad-checksum (checksum sent 4D, computed EA)" in errors[0]
    offset = int(errors[0].split("offset ")[1].split(":")[0])
    assert data[offset:offset + 2] == b"\x023"


def test_bad_checksum_frame_accepted_on_request() -> None:
    """With --accept-bad-checksums the same capture yields every result, with a warning."""
    data, expected = load("roche_4_bad_checksum")
    report = decode_capture(data, GENERIC, accept_bad_checksums=True)
    assert rows_as_expected(report) == expected["results"]
    assert any("checksum-ignored" in p for p in report.problems)


def test_line_ending_damage_is_refused_then_repaired() -> None:
    """horiba_4: CR turned into LF fails every checksum; the repair option recovers all."""
    data, expected = load("horiba_4_crlf_damaged")
    plain = decode_capture(data, GENERIC)
    assert plain.rows == []
    assert sum("bad-checksum" in p for p in plain.problems) == data.count(b"\x02")
    repaired = decode_capture(data, GENERIC, repair_line_endings=True)
    assert rows_as_expected(repaired) == expected["results"]
    assert any("line-endings-repaired" in p for p in repaired.problems)


def test_truncated_transmission_is_kept_not_turned_into_results() -> None:
    """A capture cut mid-transfer gives no results and keeps the text as incomplete."""
    data, _ = load("truncated")
    report = decode_capture(data, GENERIC)
    assert report.rows == [] and report.messages == []
    (item,) = report.incomplete
    assert item.raw.startswith(b"H|") and b"R|1|" in item.raw
    assert any("incomplete transmission" in p for p in report.problems)


@pytest.mark.parametrize("name", ["agappe_1", "cepheid_1", "erba_2", "sysmex_1"])
def test_oversized_frames_are_accepted_and_reported(name: str) -> None:
    """Frames far over 247 bytes are accepted and reported as a deviation."""
    data, expected = load(name)
    report = decode_capture(data, GENERIC)
    assert len(report.rows) == len(expected["results"])
    assert any("frame-too-long" in p for p in report.problems)
