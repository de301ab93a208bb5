"""StoreSink with live tables: a table fixed while the gateway runs is used for the next
message; the status board hears each message's outcome (both databases)."""

from __future__ import annotations

from sqlalchemy import Engine

import drivers
from lis_gateway.ingest import StoreSink
from lis_gateway.link_status import LinkStatusBoard
from lis_gateway.mapping import load_table
from lis_gateway.mapping_files import LiveTables
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool

from .test_ingest import ASTM, MAPPINGS, T0, fired, message

SPEC = drivers.get("roche-cobas")


def test_the_next_message_uses_the_table_in_use_now(engine: Engine) -> None:
    """Without a table the first result is not mapped; once the live table is replaced the
    next one is mapped and records the table's version; both messages are counted."""
    tables = LiveTables({SPEC.table_name: None}, [MAPPINGS], [])
    board = LinkStatusBoard()
    sink = StoreSink("chem1", SPEC, "tcp-server", None, NonThreadPool(engine),
                     utcnow=lambda: T0, current_table=lambda: tables.get(SPEC.table_name),
                     status=board)
    fired(sink.message_received(message(ASTM)))
    table = load_table([MAPPINGS], SPEC.table_name)
    assert table is not None
    tables.replace(SPEC.table_name, table)
    fired(sink.message_received(message(ASTM.replace(b"S77", b"S78"))))
    with engine.begin() as conn:
        (first,) = repo.list_results(conn, "S77")
        (second,) = repo.list_results(conn, "S78")
    assert first.latest.content.problems[0].startswith("not-mapped")
    assert (second.latest.content.code, second.latest.content.mapping_version) == (
        "ALT", table.version)
    status = board.get("chem1")
    assert status is not None and status.messages == 2 and status.last_message == T0.timestamp()


def test_a_refused_message_is_an_error_on_the_board(engine: Engine) -> None:
    """The store refusing a message (a naive time here) is counted with its kind only."""
    from datetime import datetime

    board = LinkStatusBoard()
    sink = StoreSink("chem1", SPEC, "tcp-server", None, NonThreadPool(engine),
                     utcnow=lambda: datetime(2026, 1, 1), status=board)
    fired(sink.message_received(message(ASTM)))
    status = board.get("chem1")
    assert status is not None and status.failed == 1
    assert [e.text for e in status.errors] == ["message not stored: ValueError"]
