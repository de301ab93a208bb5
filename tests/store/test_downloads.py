"""The downloads queue: orders and reruns queued in their own transaction, and what is
sent for them (compose is pure: no reactor, time passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.orders_in import parse_order_message
from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.order_download import Job, collect, compose
from lis_gateway.store import downloads, orders
from lis_gateway.validation import request_rerun

from ..hl7.test_orders_in import ORM
from .test_lifecycle_store import status, users
from .test_orders import ingest_requiring_order
from .test_repository import T0

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DOWNLOAD_TO = {"chem1": frozenset({"GLU", "K"}), "hem1": frozenset({"WBC"})}
CANCEL = (b"MSH|^~\\&|HIS||LIS||20261122||ORM^O01|C9|P|2.3.1\r"
          b"PID|1||BN0001^^^BV_TEST^PI\rORC|CA|CD0001\r")


def receive(engine: Engine, raw: bytes) -> None:
    """Store an order message with push analyzers configured."""
    with engine.begin() as conn:
        orders.store_order_message(conn, raw=raw, control_id="C1",
                                   parsed=parse_order_message(parse_message(raw)),
                                   source="test", at=T0, download_to=DOWNLOAD_TO)


def queue(engine: Engine) -> list[tuple[str, str, str, str, str]]:
    """(analyzer, sample, action, test, state) of every row."""
    with engine.begin() as conn:
        return [(d.analyzer, d.accession, d.action, d.test_code, d.state)
                for d in downloads.listing(conn)]


def test_orders_queue_the_tests_each_analyzer_does_and_cancellations(engine: Engine) -> None:
    """GLU (not CREA) for chem1, nothing for hem1; the same order again adds nothing;
    a cancellation queues the cancel of what was ordered."""
    receive(engine, ORM)
    receive(engine, ORM.replace(b"ORD0001", b"ORD0002"))  # a resend: nothing new
    assert queue(engine) == [("chem1", "CD0001", "new", "GLU", "pending")]
    receive(engine, CANCEL)
    assert queue(engine)[1:] == [("chem1", "CD0001", "cancel", "GLU", "pending")]


def test_a_rerun_goes_back_to_the_analyzer_that_ran_it_in_its_own_code(engine: Engine) -> None:
    """request_rerun: RERUN_REQUESTED and a row for analyzer "cobas" with its test code."""
    users(engine)
    receive(engine, ORM)
    result_id = ingest_requiring_order(engine, "CD0001")
    with engine.begin() as conn:
        outcome = request_rerun(conn, "CD0001", "GLU", "lan", "haemolysed?", Policy(),
                                at=T0 + timedelta(minutes=2))
    assert outcome.after is ResultState.RERUN_REQUESTED
    assert status(engine, result_id).state is ResultState.RERUN_REQUESTED
    assert queue(engine)[-1] == ("cobas", "CD0001", "rerun", "GLU", "pending")
    with engine.begin() as conn:
        refused = request_rerun(conn, "CD0001", "GLU", "lan", "again", Policy(), at=T0)
    assert refused.refused and len(queue(engine)) == 2  # no second row for a refusal


def test_collect_settles_what_nobody_can_send_and_groups_the_rest(engine: Engine) -> None:
    """Rows of an analyzer without order_download become not-sent with why; a ready
    analyzer's rows are grouped by sample and action, with the sample's patient."""
    users(engine)
    receive(engine, ORM)
    ingest_requiring_order(engine, "CD0001")
    with engine.begin() as conn:
        request_rerun(conn, "CD0001", "GLU", "lan", "clot", Policy(), at=T0)
        jobs = collect(conn, ["chem1"], ["chem1"], NOW)
        settled = downloads.listing(conn, downloads.NOT_SENT)
    assert [(d.analyzer, d.action) for d in settled] == [("cobas", "rerun")]
    assert "takes no downloads" in settled[0].last_error
    [job] = jobs["chem1"]
    assert [r.test_code for r in job.rows] == ["GLU"] and not job.already_sent
    assert job.sample is not None and job.sample.hospital_id == "BN0001"


def test_compose_translates_codes_and_picks_the_action_code(engine: Engine) -> None:
    """New: N (A once the analyzer had the sample); cancel: C; rerun: A in the analyzer's
    code; a local code the table lacks is reported, never sent."""
    receive(engine, ORM)
    with engine.begin() as conn:
        [job] = collect(conn, ["chem1"], ["chem1"], NOW)["chem1"]
    codes = {"GLU": "G1"}
    text, unsendable, _ = compose(job, codes, now=NOW, encoding="latin-1")
    assert text is not None and unsendable == []
    lines = text.decode("latin-1").split("\r")
    assert lines[1] == "P|1|BN0001|||Nguyen^An^Van||19800102|M"
    assert lines[2] == "O|1|CD0001||^^^G1|R|20261122090000|||||N||||||||||||||O"
    again = Job(job.rows, job.sample, already_sent=True)
    assert b"|||||A||" in (compose(again, codes, now=NOW, encoding="utf-8")[0] or b"")
    row = job.rows[0]
    cancel = Job((downloads.Download(9, "chem1", "CD0001", downloads.CANCEL, "GLU",
                                     "pending", 0, ""),), job.sample, True)
    assert b"|||||C||" in (compose(cancel, codes, now=NOW, encoding="latin-1")[0] or b"")
    rerun = Job((downloads.Download(10, "chem1", "CD0001", downloads.RERUN, "G1-own",
                                    "pending", 0, ""),), None, True)
    rerun_text = compose(rerun, {}, now=NOW, encoding="latin-1")[0] or b""
    assert b"^^^G1-own|R|" in rerun_text and b"|||||A||" in rerun_text
    assert compose(job, {}, now=NOW, encoding="latin-1") == (
        None, [row.id], "not in this analyzer's mapping table")


def test_recording_an_attempt_keeps_the_error_and_the_text_sent(engine: Engine) -> None:
    """pending with the error after a failure; sent with the payload; was_sent sees it."""
    receive(engine, ORM)
    with engine.begin() as conn:
        [row] = downloads.pending(conn, "chem1")
        downloads.record(conn, [row.id], downloads.PENDING, NOW, error="link dropped")
        [again] = downloads.pending(conn, "chem1")
        assert (again.attempts, again.last_error) == (1, "link dropped")
        assert not downloads.was_sent(conn, "chem1", "CD0001")
        downloads.record(conn, [row.id], downloads.SENT, NOW, payload=b"H|\\^&\r")
        assert downloads.pending(conn, "chem1") == []
        assert downloads.was_sent(conn, "chem1", "CD0001")


def test_a_not_sent_row_is_retried_once_the_cause_is_fixed_and_audited(engine: Engine) -> None:
    """retry: not-sent -> pending, audited with the user; other states are refused."""
    import pytest

    from lis_gateway.store._common import StoreError
    from lis_gateway.store.audit import audit_entries

    receive(engine, ORM)
    with engine.begin() as conn:
        [row] = downloads.pending(conn, "chem1")
        with pytest.raises(StoreError, match="only a not-sent one"):
            downloads.retry(conn, row.id, actor="lan", at=NOW)
        downloads.record(conn, [row.id], downloads.NOT_SENT, NOW, error="not in the table")
        again = downloads.retry(conn, row.id, actor="lan", at=NOW)
        assert (again.state, again.to_dict()["sample"]) == ("pending", "CD0001")
        assert [e.action for e in audit_entries(conn)][-1] == "download.retry"
