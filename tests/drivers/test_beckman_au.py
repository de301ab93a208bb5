"""beckman-au (AU480/AU680 online protocol) on the AU480 captures beckman_2 and beckman_3.

The fixture text, by hand (columns 0-based)::

    D 000601 0010                 DOEJAN 41    E0     005     3.58        006    79.66 ...
    ^^rack^^cup^ type ^sample No. ^ID ends col 38  ^E0   ^groups of 20 from col 50

Every expected value below is read off the bytes of
tests/fixtures/astm/beckman-au/*.bin, not from the decoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers import Framing, ResultRole
from drivers.beckman_au import decode
from lis_gateway.au_online import encode_block, encode_text
from lis_gateway.capture import decode_capture
from lis_gateway.mapping import parse_table

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm" / "beckman-au"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("beckman-au")
STX, ETX, EOT, ENQ = b"\x02", b"\x03", b"\x04", b"\x05"

#: beckman_2: (test number, value) in the order sent.
BECKMAN_2 = [
    ("005", "3.58"), ("006", "79.66"), ("007", "11.34"), ("009", "23.19"), ("011", "116.09"),
    ("013", "1.80"), ("015", "0.72"), ("017", "0.20"), ("018", "14.15"), ("020", "40.42"),
    ("026", "0.72"), ("027", "6.71"), ("028", "96.23"), ("030", "31.69"), ("097", "131.69"),
    ("098", "4.44"), ("099", "100.00"),
]


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def text_of(name: str) -> bytes:
    """The result text alone (between ENQ and EOT)."""
    data = load(name)
    assert data[:1] == ENQ and data[-1:] == EOT
    return data[1:-1]


def bcc(text: bytes) -> bytes:
    """XOR of the distinction code through ETX (AU2700/5400 Online Specifications 2.3)."""
    value = 0
    for b in text + ETX:
        value ^= b
    return bytes([value])


def errors(problems) -> list[str]:
    return [p for p in problems if p.startswith("error")]


def test_registered_as_a_custom_framing() -> None:
    assert SPEC.framing is Framing.CUSTOM
    assert SPEC.custom_decoder is decode
    assert "AU480" in SPEC.models


def test_seventeen_tests_test_by_test() -> None:
    report = decode_capture(load("beckman_2"), SPEC)
    assert report.custom_messages == 1
    assert errors(report.problems) == []
    assert report.problems == ["warning: offset 1: text without STX/ETX, taken up to EOT"]
    got = [row for _, row in report.rows]
    assert [(r.test, r.value) for r in got] == BECKMAN_2
    assert {r.sample_id for r in got} == {"DOEJAN 41"}
    assert {r.flags for r in got} == {()}
    assert {(r.unit, r.status, r.completed_at) for r in got} == {("", "", "")}
    assert {r.role for r in got} == {ResultRole.REPORTABLE}
    assert not any(r.qc for r in got)
    assert [r.record_index for r in got] == list(range(17))


def test_one_test_capture() -> None:
    report = decode_capture(load("beckman_3"), SPEC)
    assert [(r.sample_id, r.test, r.value, r.flags) for _, r in report.rows] == [
        ("ROEMARY 7", "098", "3.68", ())]
    assert report.custom_messages == 1


def test_doubled_enq_of_the_original_capture_changes_nothing() -> None:
    plain = decode(load("beckman_2"))
    doubled = decode(ENQ + load("beckman_2"))
    assert doubled.rows == plain.rows
    assert doubled.problems == ("warning: offset 2: text without STX/ETX, taken up to EOT",)


def test_framed_text_with_a_good_bcc() -> None:
    text = text_of("beckman_2")
    result = decode(ENQ + STX + text + ETX + bcc(text) + EOT)
    assert [(r.test, r.value) for r in result.rows] == BECKMAN_2
    assert result.problems == ()


def test_framed_text_without_bcc() -> None:
    text = text_of("beckman_3")
    result = decode(ENQ + STX + text + ETX + EOT)
    assert [(r.test, r.value) for r in result.rows] == [("098", "3.68")]
    assert result.problems == ()


def test_a_wrong_bcc_rejects_the_text() -> None:
    text = text_of("beckman_3")
    wrong = bytes([bcc(text)[0] ^ 0x01])
    data = ENQ + STX + text + ETX + wrong + EOT
    result = decode(data)
    assert result.rows == () and result.messages == 0
    (problem,) = errors(result.problems)
    offset = int(problem.split("offset ")[1].split(":")[0])
    assert data[offset:offset + 1] == wrong
    assert "text rejected" in problem


def test_a_capture_cut_inside_the_text_gives_nothing() -> None:
    data = load("beckman_2")[:200]
    result = decode(data)
    assert result.rows == () and result.messages == 0
    assert errors(result.problems) == [
        "error: offset 1: incomplete text (199 bytes, no ETX or EOT before the capture ends); "
        "no results taken"]


def test_a_cut_on_a_group_boundary_is_still_incomplete() -> None:
    text = text_of("beckman_2")
    result = decode(ENQ + STX + text[:50 + 3 * 20])
    assert result.rows == ()
    assert len(errors(result.problems)) == 1


def test_a_test_number_that_is_not_three_digits_rejects_the_whole_text() -> None:
    text = text_of("beckman_2")
    assert text[110:113] == b"009"  # the fourth group starts at column 50 + 3 x 20
    data = ENQ + text[:110] + b"0X9" + text[113:] + EOT
    result = decode(data)
    assert result.rows == ()
    (problem,) = errors(result.problems)
    offset = int(problem.split("offset ")[1].split(":")[0])
    assert data[offset:offset + 3] == b"0X9"


def test_a_text_of_the_wrong_length_is_refused() -> None:
    text = text_of("beckman_3")
    result = decode(ENQ + text[:-1] + EOT)
    assert result.rows == ()
    assert errors(result.problems) == [
        "error: offset 1: 'D ' result text of 69 characters is not 50 + 20 x n; "
        "no results taken"]


def test_a_shifted_header_is_refused_not_misread() -> None:
    """Six fewer ID characters and six blanks more at the end keep the length a multiple."""
    text = text_of("beckman_3")
    shifted = text[:13] + text[19:] + b" " * 6
    result = decode(ENQ + shifted + EOT)
    assert result.rows == ()
    assert len(errors(result.problems)) == 1


def test_flags_are_read_from_the_group_tail() -> None:
    text = text_of("beckman_3")
    assert text[62:64] == b"  "
    flagged = text[:62] + b"H " + text[64:66] + b" r" + text[68:]
    (row,) = decode(ENQ + flagged + EOT).rows
    assert (row.test, row.value, row.flags) == ("098", "3.68", ("H", "r"))


@pytest.mark.parametrize(("code", "role", "qc"), [
    (b"D ", ResultRole.REPORTABLE, False),
    (b"DH", ResultRole.REPORTABLE, False),
    (b"d ", ResultRole.REPORTABLE, False),
    (b"DQ", ResultRole.REPORTABLE, True),
    (b"DA", ResultRole.IGNORED, False),
    (b"DR", ResultRole.IGNORED, False),
])
def test_distinction_codes(code: bytes, role: ResultRole, qc: bool) -> None:
    text = code + text_of("beckman_3")[2:]
    (row,) = decode(ENQ + STX + text + ETX + EOT).rows
    assert (row.role, row.qc, row.value) == (role, qc, "3.68")


def test_start_and_end_markers_and_unknown_codes() -> None:
    text = text_of("beckman_3")
    data = STX + b"DB" + ETX + STX + text + ETX + STX + b"XY" + ETX + STX + b"DE" + ETX
    result = decode(data)
    assert result.messages == 3
    assert [(r.test, r.value) for r in result.rows] == [("098", "3.68")]
    (problem,) = errors(result.problems)
    assert problem.startswith("error: offset 77: unknown distinction code 'XY'")
    assert data[77:79] == b"XY"  # STX DB ETX STX, 70 text bytes, ETX STX


def test_blank_sample_id_is_reported_for_manual_matching() -> None:
    text = text_of("beckman_3")
    blank = text[:13] + b" " * 26 + text[39:]
    result = decode(ENQ + blank + EOT)
    (row,) = result.rows
    assert row.sample_id == ""
    assert ("warning: offset 14: no sample ID (rack 0006, cup 01, sample No. 0001); "
            "match these results by hand") in result.problems


def test_mapping_table_is_empty_until_the_site_numbers_its_tests() -> None:
    """AU online test numbers are assigned per site: the shipped table has no rows."""
    t = parse_table("beckman-au", (MAPPINGS / "beckman-au.csv").read_bytes(),
                    (MAPPINGS / "beckman-au.ranges.csv").read_bytes())
    assert dict(t.entries) == {}


@pytest.mark.parametrize("with_bcc", [True, False])
def test_etb_blocks_as_the_live_link_stores_them_decode_like_one_text(with_bcc: bool) -> None:
    """Any block size, BCC on or off (some BCCs equal STX, ETX, ETB, CR...): the same rows."""
    text = text_of("beckman_2")
    for size in range(1, len(text) + 1):
        result = decode(b"".join(encode_text(text, max_block=size, with_bcc=with_bcc)))
        assert [(r.test, r.value) for r in result.rows] == BECKMAN_2, size
        assert result.problems == () and result.messages == 1, size


def test_a_wrong_bcc_in_an_etb_block_rejects_the_text() -> None:
    """The BCC after ETB is checked for that block alone; a mismatch rejects the text."""
    first, last = encode_text(text_of("beckman_3"), max_block=40)
    wrong = first[:-1] + bytes([first[-1] ^ 0x01])
    result = decode(wrong + last)
    assert result.rows == ()
    assert errors(result.problems)[0].startswith(f"error: offset {len(first) - 1}: BCC")


def test_a_text_that_stops_after_an_etb_block_gives_nothing() -> None:
    """ETB then EOT: the last block never came; no results."""
    first, _last = encode_text(text_of("beckman_3"), max_block=40)
    result = decode(first + EOT)
    assert result.rows == ()
    assert errors(result.problems) == [
        "error: offset 1: text ended by EOT after an ETB block, without its last block; "
        "no results taken"]


def test_a_host_query_is_a_message_with_a_warning() -> None:
    """An R text is read as a request the gateway does not answer."""
    result = decode(encode_block(b"R 000601 0010"))
    assert result.rows == () and result.messages == 1
    assert result.problems == ("warning: offset 1: host query 'R ' not supported: not "
                               "answered, the analyzer's own timeout runs out",)


def test_a_wire_recording_of_an_au_link_decodes_from_its_received_bytes() -> None:
    """``parse`` of a live link's recording reads the analyzer's bytes, not the JSON lines."""
    import io

    from lis_gateway.wire import WireRecorder

    stream = io.BytesIO()
    recorder = WireRecorder(stream, "au1", 0.0)
    recorder.note("connected", 0.0)
    for block in encode_text(text_of("beckman_2"), max_block=100):
        recorder.record("rx", block, 1.0)
        recorder.record("tx", b"\x06", 1.0)
    report = decode_capture(stream.getvalue() + b'{"t": 2, "dir": "rx"', SPEC)
    assert [(r.test, r.value) for _, r in report.rows] == BECKMAN_2
    assert len(report.problems) == 1 and report.problems[0].startswith("error: recording:")
