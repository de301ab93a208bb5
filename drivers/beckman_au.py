"""beckman-au: Beckman Coulter AU480 / AU680 chemistry, AU "online" protocol (not ASTM).

The AU online protocol is a fixed-width text protocol (Olympus, then
Beckman Coulter: "AU680/AU480 Online Specifications", and the older
"AU2700/AU5400 Online Specifications" §2.3 for the message frame). A text
is ``STX``, a two-character distinction code, an optional two-digit unit
number, the text, ``ETX`` and an optional BCC (XOR of the bytes from the
distinction code through ETX, as §2.3 reads). Start and end codes, the
unit number and the BCC are menu settings ([PARAMETER] [ONLINE]
[PROTOCOL]); this driver expects the defaults: STX, ETX, no unit number,
BCC on or off. Distinction codes for results (analyzer to host):

    DB start of result transfer    DE end of result transfer
    D_ normal sample result        DH rerun sample result
    d_ stat sample result          dH stat rerun result
    DQ QC sample result            DA calibration result   DR reagent blank

(``_`` is a space.) The result text, as the AU480 captures (corpus
beckman_2/3, paras-rana11/lab_lis) show it, 0-based columns::

    0-1   distinction code ("D ")
    2-5   rack number            "0006"
    6-7   cup position           "01"
    8     sample type            " " serum (U urine, X other, as the
                                 AU2700/5400 alarm list writes them)
    9-12  sample number          "0010"
    13-38 sample ID, right-aligned (a typed patient name in the captures)
    39-42 dummy, blank
    43-49 "E0" and five blanks: not interpreted
    50-   one 20-character group per test:
          test number (3 digits), value (9, right-aligned), then 8
          characters read as four 2-character flag slots (blank in the captures)

The protocol notes (corpus INDEX, protocols.md §4.4) describe 14 characters
per test (number, value, a 2-character flag); the captures show 20. Reading
the other six as flag slots loses nothing: anything there reaches the flag
map and, unknown, is shown as an instrument flag.

The decoder is lenient about framing and strict about content:

* ENQ, ACK, NAK are link control and skipped (the captures start with a
  doubled ENQ, a capture artefact). Text without STX/ETX (the capture tool
  stripped them) is accepted up to EOT, CR or LF, with a warning.
* A text that does not end (no ETX, EOT, CR or LF before the data ends) is
  incomplete: no results are taken from it.
* A BCC that does not match rejects the text.
* A result text whose layout does not match (length not 50 + 20 x n, a
  non-blank dummy, a test number that is not three digits) gives no
  results at all, never a partial or shifted set.
* A blank sample ID gives rows with an empty sample ID and a warning naming
  the rack, cup and sample number, so a person matches them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._context import ResultRole
from ._spec import CustomDecode, DriverSpec, Framing, QueryStyle, SerialDefaults
from .extract import ResultRow

STX, ETX, EOT, ENQ, ACK, NAK, LF, CR = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x0A, 0x0D
_SKIPPED = frozenset({ENQ, ACK, NAK})
_ENDS = {EOT: "EOT", CR: "CR", LF: "LF"}
_NOT_BCC = frozenset({STX, ENQ, EOT, ACK, NAK, CR, LF})

HEADER = 50  #: characters before the first test group
GROUP = 20  #: characters per test group

#: distinction code -> (role, qc); DB/DE carry no results.
KINDS: dict[str, tuple[ResultRole, bool]] = {
    "D ": (ResultRole.REPORTABLE, False),
    "DH": (ResultRole.REPORTABLE, False),
    "d ": (ResultRole.REPORTABLE, False),
    "dH": (ResultRole.REPORTABLE, False),
    "DQ": (ResultRole.REPORTABLE, True),
    "DA": (ResultRole.IGNORED, False),
    "DR": (ResultRole.IGNORED, False),
}
MARKERS = frozenset({"DB", "DE"})


@dataclass(frozen=True, slots=True)
class AuResult:
    """One test of an AU result text, with where the text sits."""

    kind: str
    rack: str
    cup: str
    sample_type: str
    sample_no: str
    sample_id: str
    test: str
    value: str
    flags: tuple[str, ...]
    index: int


@dataclass
class _Text:
    offset: int  #: of the first text byte
    framed: bool  #: began with STX
    body: bytearray = field(default_factory=bytearray)


def _bcc(body: bytes) -> int:
    value = ETX
    for b in body:
        value ^= b
    return value


def split_texts(data: bytes) -> tuple[list[tuple[int, bytes]], list[str]]:
    """Cut a capture into texts.

    Returns:
        (offset of the text's first byte, text bytes) for every complete text,
        and the problems found, each with its byte offset.
    """
    texts: list[tuple[int, bytes]] = []
    problems: list[str] = []
    current: _Text | None = None

    def finish(end: str) -> None:
        nonlocal current
        if current is not None and current.body:
            if not current.framed:
                problems.append(f"warning: offset {current.offset}: text without STX/ETX, "
                                f"taken up to {end}")
            texts.append((current.offset, bytes(current.body)))
        current = None

    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == STX:
            if current is not None and current.body:
                problems.append(f"error: offset {current.offset}: text interrupted by STX at "
                                f"offset {i}; its {len(current.body)} bytes are dropped")
            current = _Text(i + 1, True)
        elif b == ETX:
            if current is None or not current.body:
                problems.append(f"warning: offset {i}: ETX without text")
                current = None
            else:
                body = bytes(current.body)
                start, framed = current.offset, current.framed
                current = None
                if i + 1 < n and data[i + 1] not in _NOT_BCC:
                    i += 1
                    if data[i] != _bcc(body):
                        problems.append(f"error: offset {i}: BCC {data[i]:02X} does not match "
                                        f"{_bcc(body):02X} for the text at offset {start}; "
                                        "text rejected")
                        i += 1
                        continue
                if not framed:
                    problems.append(f"warning: offset {start}: text without STX")
                texts.append((start, body))
        elif b in _ENDS:
            finish(_ENDS[b])
        elif b in _SKIPPED:
            if current is not None and current.body:
                problems.append(f"error: offset {current.offset}: text interrupted by a "
                                f"control byte 0x{b:02X} at offset {i}; its bytes are dropped")
                current = None
        elif b < 0x20 or b == 0x7F:
            problems.append(f"warning: offset {i}: control byte 0x{b:02X} skipped")
        else:
            if current is None:
                current = _Text(i, False)
            current.body.append(b)
        i += 1
    if current is not None and current.body:
        problems.append(f"error: offset {current.offset}: incomplete text ({len(current.body)} "
                        "bytes, no ETX or EOT before the capture ends); no results taken")
    return texts, problems


def parse_result_text(text: str, offset: int) -> tuple[list[AuResult], list[str]]:
    """The tests of one D-type result text (``text`` starts at the distinction code).

    Returns:
        The tests (empty when the layout does not match) and the problems.
    """
    kind = text[:2]
    if len(text) < HEADER or (len(text) - HEADER) % GROUP:
        return [], [f"error: offset {offset}: {kind!r} result text of {len(text)} characters "
                    f"is not {HEADER} + {GROUP} x n; no results taken"]
    if text[39:43].strip():
        return [], [f"error: offset {offset + 39}: the dummy field is {text[39:43]!r}, not "
                    "blank; the layout is not the one this driver knows; no results taken"]
    rack, cup, sample_type, sample_no = text[2:6], text[6:8], text[8], text[9:13]
    sid = text[13:39].strip()
    results: list[AuResult] = []
    for k in range((len(text) - HEADER) // GROUP):
        start = HEADER + k * GROUP
        group = text[start:start + GROUP]
        code = group[:3]
        if not (code.isascii() and code.isdigit()):
            return [], [f"error: offset {offset + start}: test number {code!r} is not three "
                        "digits; no results taken from this text"]
        flags = tuple(f for f in (group[12 + j:14 + j].strip() for j in range(0, 8, 2)) if f)
        results.append(AuResult(kind, rack, cup, sample_type.strip(), sample_no, sid, code,
                                group[3:12].strip(), flags, k))
    problems: list[str] = []
    if not sid and results:
        problems.append(f"warning: offset {offset + 13}: no sample ID (rack {rack}, cup {cup}, "
                        f"sample No. {sample_no}); match these results by hand")
    return results, problems


def decode(data: bytes) -> CustomDecode:
    """Captured AU online bytes -> result rows, message count and problems."""
    texts, problems = split_texts(data)
    rows: list[ResultRow] = []
    messages = 0
    for offset, body in texts:
        text = body.decode("latin-1")
        kind = text[:2]
        if kind in MARKERS:
            messages += 1
            continue
        if kind not in KINDS:
            problems.append(f"error: offset {offset}: unknown distinction code {kind!r}; "
                            "text skipped")
            continue
        results, found = parse_result_text(text, offset)
        problems += found
        if not results:
            continue
        messages += 1
        role, qc = KINDS[kind]
        rows += [ResultRow(sample_id=r.sample_id, test=r.test, value=r.value, unit="",
                           reference_range="", flags=r.flags, status="", completed_at="",
                           instrument="", record_index=r.index, role=role, qc=qc)
                 for r in results]
    return CustomDecode(tuple(rows), messages, tuple(problems))


SPEC = DriverSpec(
    name="beckman-au",
    description="Beckman Coulter AU480/AU680 online protocol (fixed-width D texts, not ASTM)",
    framing=Framing.CUSTOM,
    custom_decoder=decode,
    encoding="latin-1",
    serial=SerialDefaults(baudrate=9600, bytesize=8, parity="N", stopbits=1),
    query_style=QueryStyle.NONE,
    models="AU480, AU680",
    tested_with="AU480 captures (corpus beckman_2, beckman_3, paras-rana11/lab_lis)",
)
