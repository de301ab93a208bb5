"""atheris harness: ASTM bytes through the E1381 link core (each driver's dialect, any
read size), frame reassembly, bare records, E1394 decoding, the driver's extraction and
normalization with its shipped mapping table; Beckman AU through its own decoder.

Run by ``tests/fuzz/test_atheris.py`` (bounded in time); by hand:
``.venv/bin/python tests/fuzz/fuzz_astm.py -max_total_time=60 CORPUS_DIR``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["lis_gateway", "drivers"]):
    from _harness import check_incomplete, check_message, drivers_of, is_custom, options

    from drivers import Protocol
    from drivers.extract import extract_results
    from lis_gateway.astm.assembler import AstmMessage, MessageAssembler
    from lis_gateway.astm.events import FrameAccepted, TransferAborted, TransferEnded
    from lis_gateway.astm.link import LinkConnection
    from lis_gateway.capture import decode_capture

DRIVERS = drivers_of(Protocol.ASTM)


def test_one_input(data: bytes) -> None:
    """Decode ``data`` as one driver's analyzer would send it.

    The last three bytes choose the driver, the read size and bare records.
    """
    body, (driver, size, bare) = options(data, 3)
    spec, table = DRIVERS[driver % len(DRIVERS)]
    size = size % 64 + 1
    if is_custom(spec):
        report = decode_capture(body, spec)
        assert all(report.problems)
        return
    items = []
    if bare & 1:
        assembler = MessageAssembler(spec.encoding, any_newline=True)
        for i in range(0, len(body), size):
            items += assembler.add_text(body[i:i + size], block_end=True, offset=i)
        items += assembler.end_transfer()
    else:
        link = LinkConnection(spec.link_config())
        assembler = MessageAssembler(spec.encoding)
        now = 0.0
        for i in range(0, len(body), size):
            now += 0.5
            link.handle_timer(now)
            link.receive_data(body[i:i + size], now)
            link.data_to_send()
            items += _route(link, assembler)
        link.connection_lost(now + 1)
        items += _route(link, assembler)
    for item in items:
        if isinstance(item, AstmMessage):
            check_message(item, spec, table, list(extract_results(item, spec)))
        else:
            check_incomplete(item)


def _route(link: LinkConnection, assembler: MessageAssembler) -> list[object]:
    out: list[object] = []
    for event in link.events():
        if isinstance(event, FrameAccepted):
            out += assembler.add_text(event.text, block_end=event.final, offset=event.offset)
        elif isinstance(event, TransferEnded):
            out += assembler.end_transfer()
        elif isinstance(event, TransferAborted):
            out += assembler.end_transfer(aborted=event.reason.value)
    return out


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
