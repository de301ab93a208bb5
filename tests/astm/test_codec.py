"""E1394 records: delimiters, escapes, decode/encode, record order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.astm.codec import decode_record, decode_records, encode_message, encode_record
from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.errors import RecordError, RecordOrderError
from lis_gateway.astm.records import (
    FIELD_NAMES,
    RECORD_TYPES,
    CommentRecord,
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    ResultRecord,
    TerminatorRecord,
    UnknownRecord,
)


@pytest.mark.parametrize(("header", "expected"), [
    ("H|\\^&|||host", Delimiters("|", "\\", "^", "&")),
    ("H|`^&|||ERBA", Delimiters("|", "`", "^", "&")),  # Erba: backquote repeat
    ("H|@^\\|msg1||GeneXpert", Delimiters("|", "@", "^", "\\")),  # Cepheid
])
def test_delimiters_come_from_the_header(header: str, expected: Delimiters) -> None:
    """Whatever the H record declares is used, with no warning."""
    delims, warnings = Delimiters.from_header(header)
    assert delims == expected and warnings == []


def test_doubled_backslash_header_falls_back_with_warning() -> None:
    """`H|\\\\^&` (horiba_3) is read as the default set, and said so."""
    delims, warnings = Delimiters.from_header("H|\\\\^&|||")
    assert delims == Delimiters()
    assert "doubled backslash" in warnings[0]


def test_hl7_delimiters_in_astm_header_are_refused() -> None:
    """`H|^~\\&` has four characters in H-2: default delimiters and a warning."""
    delims, warnings = Delimiters.from_header("H|^~\\&|||")
    assert delims == Delimiters() and warnings


@pytest.mark.parametrize(("raw", "text"), [
    ("PNG&R&20240628&R&WDF.PNG", "PNG\\20240628\\WDF.PNG"),  # Sysmex image path
    ("a&F&b&S&c&E&d", "a|b^c&d"),
    ("&X4142&", "AB"),
    ("50&", "50&"),  # unterminated: kept
    ("&Z&", "&Z&"),  # unknown: kept
])
def test_escape_sequences_decode(raw: str, text: str) -> None:
    """Standard and hex escapes decode; unknown or unterminated ones stay as sent."""
    assert Delimiters().unescape(raw) == text


def test_escape_uses_the_declared_escape_character() -> None:
    """With `|@^\\` the escape character is the backslash."""
    delims = Delimiters("|", "@", "^", "\\")
    assert delims.unescape("a\\F\\b\\R\\c") == "a|b@c"
    assert delims.escape_text("a|b@c\\d^e") == "a\\F\\b\\R\\c\\E\\d\\S\\e"


def test_components_and_repeats() -> None:
    """Components of the first repeat are decoded; repeats split raw."""
    d = Delimiters()
    assert d.components("^^^^WBC^1") == ["", "", "", "", "WBC", "1"]
    assert d.repeats("^^^GLU\\^^^NA") == ["^^^GLU", "^^^NA"]


def test_decode_result_record_fields_by_number() -> None:
    """R-3…R-14 land in their named fields; more fields go to extra."""
    rec = decode_record("R|1|^^^GLU|5.5|mmol/L|3.9-6.1|H||F||op|20240101|20240102|P1|x|y")
    assert isinstance(rec, ResultRecord)
    assert (rec.universal_test_id, rec.value, rec.units, rec.reference_range) == (
        "^^^GLU", "5.5", "mmol/L", "3.9-6.1")
    assert (rec.abnormal_flags, rec.status, rec.completed_at, rec.instrument_id) == (
        "H", "F", "20240102", "P1")
    assert rec.extra == ("x", "y")


def test_short_record_and_trailing_empty_fields_round_trip() -> None:
    """`P|1` and `H|\\^&|||` come back exactly as received."""
    for text in ("P|1", "H|\\^&|||", "L||", "O|1||||||||||||||||||||||||||||||"):
        assert encode_record(decode_record(text)) == text


def test_unknown_record_type_is_kept_and_reported() -> None:
    """`2P|1` (a frame digit glued to the type, ortho_4) is not a P record."""
    decoded = decode_records(["H|\\^&", "2P|1|x", "L|1|N"])
    assert isinstance(decoded.records[1], UnknownRecord)
    assert decoded.records[1].record_type == "2P"
    assert any("unknown record type" in p.message for p in decoded.errors)
    assert encode_record(decoded.records[1]) == "2P|1|x"


def test_message_without_header_is_an_error_not_an_exception() -> None:
    """Records without H decode with default delimiters and a reported error."""
    decoded = decode_records(["R|1|^^^GLU|5"])
    assert decoded.errors[0].message == "message has no H (header) record"
    assert isinstance(decoded.records[0], ResultRecord)


def test_out_of_order_records_are_warnings_when_decoding() -> None:
    """An R before any O decodes, with a warning at its position."""
    decoded = decode_records(["H|\\^&", "P|1", "R|1|^^^A|1", "L|1"])
    assert [(p.severity, p.record_index) for p in decoded.problems] == [("warning", 2)]


def test_indented_records_are_read_with_a_warning() -> None:
    """Leading spaces (sphera_1) are stripped for reading and reported."""
    decoded = decode_records(["H|\\^&", "  P|1", "L|1"])
    assert isinstance(decoded.records[1], PatientRecord)
    assert decoded.problems[0].message == "record starts with white space"


def test_encoder_enforces_record_order() -> None:
    """The gateway never sends a message out of E1394 order."""
    with pytest.raises(RecordOrderError):
        encode_message([HeaderRecord(), ResultRecord(sequence="1"), TerminatorRecord()])
    with pytest.raises(RecordOrderError):
        encode_message([HeaderRecord(), PatientRecord(sequence="1")])  # no L


def test_encoder_writes_the_declared_delimiters_and_encoding() -> None:
    """H-2 is written from the delimiters; text is encoded with the link's encoding."""
    delims = Delimiters("|", "`", "^", "&")
    data = encode_message([
        HeaderRecord(sender_id="LIS"),
        PatientRecord(sequence="1", name=delims.build_field([["NGUYỄN", "VĂN A"]])),
        OrderRecord(sequence="1", specimen_id="S1", universal_test_id="^^^GLU`^^^NA"),
        TerminatorRecord(sequence="1", termination_code="N"),
    ], delims, encoding="utf-8")
    assert data.startswith(b"H|`^&|||LIS\r")
    assert "NGUYỄN^VĂN A".encode() in data
    assert data.endswith(b"L|1|N\r")


def test_encoder_refuses_unencodable_text() -> None:
    """Vietnamese text cannot go out as latin-1: a RecordError names the record."""
    with pytest.raises(RecordError) as err:
        encode_message([HeaderRecord(), PatientRecord(sequence="1", name="NGUYỄN"),
                        TerminatorRecord()])
    assert err.value.record_index == 1


def test_encoder_refuses_field_delimiter_inside_a_field() -> None:
    """A raw '|' in a field would shift every later field: refused."""
    with pytest.raises(RecordError):
        encode_record(CommentRecord(sequence="1", text="a|b"))


def test_every_record_type_models_its_standard_fields() -> None:
    """Field counts match E1394: H 14, P 35, O 31, R 14, C 5, Q 13, L 3."""
    counts = {t: len(FIELD_NAMES[cls]) + 1 for t, cls in RECORD_TYPES.items()}
    assert counts == {"H": 14, "P": 35, "O": 31, "R": 14, "C": 5, "Q": 13, "M": 2, "S": 2,
                      "L": 3}


# ---------------------------------------------------------------- round trip

PUNCT = "|\\^&`@~!#$%*+/;:<>?[]{}"


@st.composite
def delimiter_sets(draw: st.DrawFn) -> Delimiters:
    """Four distinct punctuation characters."""
    chars = draw(st.lists(st.sampled_from(PUNCT), min_size=4, max_size=4, unique=True))
    return Delimiters(*chars)


text_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                             blacklist_characters="\x7f"), max_size=12)


@st.composite
def records_with(draw: st.DrawFn, delims: Delimiters) -> list:
    """A legal message of typed records whose fields hold escaped structured text."""
    def field() -> str:
        reps = draw(st.lists(st.lists(text_values, min_size=1, max_size=3), min_size=1,
                             max_size=2))
        return delims.build_field(reps)

    records: list = [HeaderRecord(sender_id=field(), timestamp="20240101120000")]
    for p in range(draw(st.integers(1, 2))):
        records.append(PatientRecord(sequence=str(p + 1), name=field()))
        for o in range(draw(st.integers(1, 2))):
            records.append(OrderRecord(sequence=str(o + 1), specimen_id=field(),
                                       universal_test_id=field()))
            for r in range(draw(st.integers(0, 3))):
                records.append(ResultRecord(sequence=str(r + 1), universal_test_id=field(),
                                            value=field(), units=field(),
                                            abnormal_flags=field()))
                if draw(st.booleans()):
                    records.append(CommentRecord(sequence="1", source="I", text=field()))
    records.append(TerminatorRecord(sequence="1", termination_code="N"))
    return records


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_encode_round_trip(data: st.DataObject) -> None:
    """decode(encode(records)) == records for generated records and delimiter sets."""
    delims = data.draw(delimiter_sets())
    records = data.draw(records_with(delims))
    text = encode_message(records, delims)
    lines = text.decode("latin-1").split("\r")[:-1]
    decoded = decode_records(lines)
    assert decoded.delimiters == delims
    assert [p for p in decoded.problems] == []
    expected = [r if not isinstance(r, HeaderRecord) else
                HeaderRecord(delimiter_definition=delims.definition, sender_id=r.sender_id,
                             timestamp=r.timestamp) for r in records]
    assert list(decoded.records) == expected


@given(delimiter_sets(), text_values)
def test_escape_unescape_round_trip(delims: Delimiters, text: str) -> None:
    """Any text survives escaping and unescaping with any delimiter set."""
    escaped = delims.escape_text(text)
    assert delims.field not in escaped and delims.component not in escaped
    assert delims.unescape(escaped) == text
