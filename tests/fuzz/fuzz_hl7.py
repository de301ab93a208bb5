"""atheris harness: bytes through the MLLP framer (any read size, the missing-FS timer),
the HL7 parser (any default or forced character set), each HL7 driver's extraction and
normalization with its shipped table, and the ACKs the link would answer.

Run by ``tests/fuzz/test_atheris.py`` (bounded in time); by hand:
``.venv/bin/python tests/fuzz/fuzz_hl7.py -max_total_time=60 CORPUS_DIR``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports(include=["lis_gateway", "drivers"]):
    from _harness import check_message, drivers_of, options

    from drivers import Protocol
    from drivers.extract import extract_hl7_results
    from lis_gateway.adapters.mllp_protocol import build_acks
    from lis_gateway.hl7.ack import Outcome, plan_acks
    from lis_gateway.hl7.message import parse_message
    from lis_gateway.hl7.mllp import BlockIncomplete, BlockReceived, MllpFramer
    from lis_gateway.hl7.responder import MessageRole, read_query, role_of

DRIVERS = drivers_of(Protocol.HL7)
ENCODINGS = [None, "utf-8", "latin-1", "cp1258", "ascii"]
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_one_input(data: bytes) -> None:
    """Frame, parse, extract and acknowledge ``data`` as one HL7 link would.

    The last three bytes choose the driver, the read size and a forced character set.
    """
    body, (driver, size, forced) = options(data, 3)
    spec, table = DRIVERS[driver % len(DRIVERS)]
    size = size % 64 + 1
    override = ENCODINGS[forced % len(ENCODINGS)]
    framer = MllpFramer(missing_fs_timeout=1.0)
    events = []
    now = 0.0
    for i in range(0, len(body), size):
        events += framer.receive_data(body[i:i + size], now)
        now += 0.6
        timer = framer.get_timer()
        if timer is not None and timer <= now:
            events += framer.handle_timer(now)
    events += framer.connection_lost()
    for event in events:
        if isinstance(event, BlockIncomplete):
            assert event.reason
        if not isinstance(event, BlockReceived) or not event.data.strip(b"\r\n\x00 \t"):
            continue  # the link skips empty blocks too
        msg = parse_message(event.data, default_encoding=spec.hl7_default_encoding,
                            encoding_override=override)
        assert msg.raw == event.data
        check_message(msg, spec, table, list(extract_hl7_results(msg, spec)))
        if role_of(msg) is MessageRole.QUERY:
            read_query(msg)
        for outcome in Outcome:  # what the link would answer (every analyzer gets one)
            codes = plan_acks(msg, outcome)
            acks, _utf8 = build_acks(msg, codes, control_ids=lambda: "G1", now=NOW,
                                     text="message not stored; please send it again",
                                     error_code="207")
            assert len(acks) == len(codes)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
