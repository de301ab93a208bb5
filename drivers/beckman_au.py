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
* A text may come in several blocks: every block but the last ends with ETB
  and its own BCC (the byte after ETB, unless STX follows at once); the
  blocks' texts are joined, as the live link stores them.
* A text that does not end (no ETX, EOT, CR or LF before the data ends, or
  ETB with no block after it) is incomplete: no results are taken from it.
* A BCC that does not match rejects the text.
* A result text whose layout does not match (length not 50 + 20 x n, a
  non-blank dummy, a test number that is not three digits) gives no
  results at all, never a partial or shifted set.
* A blank sample ID gives rows with an empty sample ID and a warning naming
  the rack, cup and sample number, so a person matches them by hand.
* A host query (``R`` texts) is a message without results and a warning.

The live link (``lis-gateway run``, serial or TCP) is
:mod:`lis_gateway.au_online` with :mod:`lis_gateway.adapters.au_protocol`.
What it knows of the handshake comes from third-party sources (descriptions
of the AU online specifications by other integrators and a third-party
AU5800 driver), not from a Beckman specification, and has been tried
against simulated analyzers only, never a real AU:

* Every block is answered ACK when its BCC checks, NAK when not; the
  analyzer sends a NAKed block again (3 retries), and after four NAKs in a
  row the gateway gives the text up too (its blocks are kept as incomplete).
* A result text's last ACK waits until the store has committed it (NAK if
  the commit fails); ``DB``/``DE`` and ``DA``/``DR`` texts are ACKed at once
  (not stored; the wire recording has them).
* The BCC is expected on (``checksum_mode`` STRICT): an AU whose BCC is
  switched off needs it switched on, or a driver with ``ChecksumMode.NONE``.
* Host queries (``R`` texts, answered with ``S`` texts whose layout differs
  between models) are not answered: the text is ACKed, stored with the
  problem and logged as ``host-query-not-supported``, and the analyzer's own
  timeout for the answer runs out (what it does then is the AU's setting).
* TCP: the gateway listens by default (``tcp-server``, for an AU behind an
  RS-232/Ethernet converter that connects out); ``tcp-client`` works the
  same way once connected. Serial: 9600 8N1 by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.au_online.codes import MARKERS, is_host_query

from ._context import ResultRole
from ._spec import CustomDecode, DriverSpec, Framing, QueryStyle, SerialDefaults
from .extract import ResultRow

STX, ETX, EOT, ENQ, ACK, NAK, LF, CR, ETB = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x0A, 0x0D, 0x17
_SKIPPED = frozenset({ENQ, ACK, NAK})
_ENDS = {EOT: "EOT", CR: "CR", LF: "LF"}
_NOT_BCC = frozenset({STX, ENQ, EOT, ACK, NAK, CR, LF})

HEADER = 50  #: characters before the first test group
GROUP = 20  #: characters per test group

#: distinction code -> (role, qc); DB/DE (``MARKERS``) carry no results.
KINDS: dict[str, tuple[ResultRole, bool]] = {
    "D ": (ResultRole.REPORTABLE, False),
    "DH": (ResultRole.REPORTABLE, False),
    "d ": (ResultRole.REPORTABLE, False),
    "dH": (ResultRole.REPORTABLE, False),
    "DQ": (ResultRole.REPORTABLE, True),
    "DA": (ResultRole.IGNORED, False),
    "DR": (ResultRole.IGNORED, False),
}


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
    block_from: int = 0  #: where the current block's text starts in ``body``
    continued: bool = False  #: the last block ended with ETB: the next STX continues it


def _bcc(body: bytes, end: int = ETX) -> int:
    value = end
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
        if current is not None and current.continued:
            problems.append(f"error: offset {current.offset}: text ended by {end} after an "
                            "ETB block, without its last block; no results taken")
        elif current is not None and current.body:
            if not current.framed:
                problems.append(f"warning: offset {current.offset}: text without STX/ETX, "
                                f"taken up to {end}")
            texts.append((current.offset, bytes(current.body)))
        current = None

    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == STX:
            if current is not None and (current.continued
                                        or len(current.body) == current.block_from > 0):
                current.continued = False  # the next block of the text (or a BCC equal to STX)
                current.block_from = len(current.body)
            else:
                if current is not None and current.body:
                    problems.append(f"error: offset {current.offset}: text interrupted by STX "
                                    f"at offset {i}; its {len(current.body)} bytes are dropped")
                current = _Text(i + 1, True)
        elif b == ETB and current is not None and len(current.body) > current.block_from:
            if i + 1 < n and data[i + 1] != STX:  # a BCC: the byte before the next STX
                i += 1
                block = bytes(current.body[current.block_from:])
                if data[i] != _bcc(block, ETB):
                    problems.append(f"error: offset {i}: BCC {data[i]:02X} does not match "
                                    f"{_bcc(block, ETB):02X} for the block before it; the text "
                                    f"at offset {current.offset} is rejected")
                    current = None
                    i += 1
                    continue
            current.continued = True
        elif b == ETX:
            if current is None or not current.body:
                problems.append(f"warning: offset {i}: ETX without text")
                current = None
            else:
                body = bytes(current.body)
                block = body[current.block_from:]
                start, framed = current.offset, current.framed
                current = None
                if i + 1 < n and data[i + 1] not in _NOT_BCC:
                    i += 1
                    if data[i] != _bcc(block):
                        problems.append(f"error: offset {i}: BCC {data[i]:02X} does not match "
                                        f"{_bcc(block):02X} for the text at offset {start}; "
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
        if is_host_query(kind):
            messages += 1
            problems.append(f"warning: offset {offset}: host query {kind!r} not supported: "
                            "not answered, the analyzer's own timeout runs out")
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
    checksum_mode=ChecksumMode.STRICT,  # the live link expects a BCC after ETX and ETB
    receive_timeout=30.0,  # a block or text with no byte for this long is given up
    query_style=QueryStyle.NONE,
    models="AU480, AU680",
    tested_with="AU480 captures (corpus beckman_2, beckman_3, paras-rana11/lab_lis); "
                "the live link against a simulated AU only",
)
