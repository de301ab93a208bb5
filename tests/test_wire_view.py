"""Showing wire recordings: control characters named, the tail of the newest file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lis_gateway.wire import open_recorder
from lis_gateway.wire_view import Piece, newest_recording, parse_tail, read_tail, visible


def test_control_characters_are_named_and_a_frame_is_one_row() -> None:
    """<ENQ>, then a whole E1381 frame <STX>...<CR><ETX>xx<CR><LF> on one row, then <EOT>;
    HL7 segments in an MLLP block each on a row."""
    rows = visible(b"\x05\x021H|\\^&\r\x0312\r\n\x04")
    assert rows == (
        (Piece("<ENQ>", "ENQ"),),
        (Piece("<STX>", "STX"), Piece("1H|\\^&"), Piece("<CR>", "CR"), Piece("<ETX>", "ETX"),
         Piece("12"), Piece("<CR>", "CR"), Piece("<LF>", "LF")),
        (Piece("<EOT>", "EOT"),))
    mllp = visible(b"\x0bMSH|^~\\&\rOBX|1\r\x1c\r")
    assert mllp == (
        (Piece("<VT>", "VT"), Piece("MSH|^~\\&"), Piece("<CR>", "CR")),
        (Piece("OBX|1"), Piece("<CR>", "CR")),
        (Piece("<FS>", "FS"),),
        (Piece("<CR>", "CR"),))


def test_text_is_decoded_with_the_links_encoding() -> None:
    """Vietnamese in UTF-8 survives; bytes that do not decode are shown replaced."""
    assert visible("Trần".encode(), "utf-8") == ((Piece("Trần"),),)
    assert visible(b"\xff", "utf-8") == ((Piece("\ufffd"),),)


def test_a_cut_tail_drops_its_partial_first_line_and_counts_damage() -> None:
    """The first line of a cut tail is partial; a damaged line is counted, not fatal."""
    data = (b'"dir":"rx","b64":"BQ=="}\n'
            b'{"t":1.5,"dir":"rx","b64":"BQ=="}\n'
            b'{"t":2.0,"dir":"note","text":"connection lost: x"}\n'
            b'{"t":2.5,"dir":"tx","b64":"%%%"}\n')
    lines, unreadable = parse_tail(data, cut=True)
    assert [(x.t, x.direction, x.size) for x in lines] == [(1.5, "rx", 1), (2.0, "note", 0)]
    assert lines[1].rows == ((Piece("connection lost: x"),),) and unreadable == 1


def test_the_newest_recording_of_a_link_and_its_tail(tmp_path: Path) -> None:
    """Files of another link with a longer name are not taken; the newest is; a small tail
    starts inside the file."""
    old = open_recorder(tmp_path, "chem", 1_700_000_000.0)
    old.record("rx", b"\x05", 1_700_000_000.5)
    old.close()
    other = open_recorder(tmp_path, "chem-2", 1_700_000_900.0)
    other.record("rx", b"\x04", 1_700_000_901.0)
    other.close()
    new = open_recorder(tmp_path, "chem", 1_700_000_100.0)
    for i in range(200):
        new.record("rx", b"\x021R|%d|^^^GLU|5.0\r\x03" % i, 1_700_000_101.0 + i)
    new.close()
    by_stamp = {re.search(r"\d{8}T\d{6}", p.name).group(): p  # type: ignore[union-attr]
                for p in tmp_path.iterdir()}
    older, newer = by_stamp["20231114T221320"], by_stamp["20231114T221500"]
    os.utime(older, (3000, 3000))  # written last on disk: the newest, whatever its name
    os.utime(newer, (2000, 2000))
    os.utime(by_stamp["20231114T222820"], (4000, 4000))  # another link's
    assert newest_recording(tmp_path, "chem") == older
    os.utime(newer, (5000, 5000))
    found = newest_recording(tmp_path, "chem")
    assert found == newer
    tail = read_tail(found, kb=1)
    assert tail.start > 0 and tail.size == found.stat().st_size and tail.unreadable == 0
    assert tail.lines[-1].rows[0][1] == Piece("1R|199|^^^GLU|5.0")
    assert newest_recording(tmp_path, "hl7") is None
    assert newest_recording(tmp_path / "missing", "chem") is None
