"""The simulated Mindray BC asks its worklist request (ORM^O01) and reads the ORR^O02; the
gateway recognises it, in a replay too; end to end against ``lis-gateway receive``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import drivers
from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.patient import PatientIdentity
from lis_gateway.hl7.queries import OrderedSample
from lis_gateway.hl7.responder import MessageRole, role_of
from lis_gateway.hl7.worklist import build_orr_o02, parse_orm_o01
from lis_gateway.sim import hl7_styles
from lis_gateway.sim.hl7_styles import query_answer
from lis_gateway.sim.mllp_link import Answered, MllpAnalyzerLink
from lis_gateway.sim.recording import messages
from tests.integration._harness import GatewayProcess

from ._processes import simulate

WHEN = datetime(2026, 3, 4, 9, 30)
NOW = datetime(2026, 3, 4, 9, 31, tzinfo=UTC)
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "hl7" / "mindray_bc_orm.bin"
TUBE = OrderedSample("2603040007", (("WBC", "Leukocytes"), ("EOS%", "Eosinophils")),
                     PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"),
                                     family_name="Doe"))


def request() -> bytes:
    """The simulated BC's worklist request for tube 2603040007, control ID 7."""
    query = hl7_styles.MINDRAY_BC.query
    assert query is not None
    return query("2603040007", WHEN, "7")


def test_the_simulated_request_is_what_the_gateway_answers() -> None:
    """ORM^O01, ORC-1 RF, ORC-3 the tube: a query with that one key and no problems."""
    msg = parse_message(request())
    assert msg.raw.decode().split("\r")[:-1] == [
        "MSH|^~\\&|BC-5380|Mindray|||20260304093000||ORM^O01|7|P|2.3.1||||||UNICODE",
        "ORC|RF||2603040007||IP"]
    assert role_of(msg) is MessageRole.QUERY
    parsed = parse_orm_o01(msg)
    assert (parsed.control_id, parsed.sample_id, parsed.problems) == ("7", "2603040007", ())


def test_orr_answers_are_read() -> None:
    """AA gives found with the Test Mode as its one "test"; AR gives not found."""
    parsed = parse_orm_o01(parse_message(request()))
    found = query_answer(parse_message(build_orr_o02(parsed, TUBE, control_id="G1", now=NOW)))
    none = query_answer(parse_message(build_orr_o02(parsed, None, control_id="G2", now=NOW)))
    assert found is not None and (found.found, found.tests, found.detail) == (
        True, ("CBC+DIFF",), "test mode: CBC+DIFF")
    assert none is not None and (none.found, none.tests, none.detail) == (
        False, (), "no order (MSA AR)")


def test_the_link_takes_the_orr_as_the_answer_to_its_request() -> None:
    """The ORR^O02's MSA-2 matches the request's MSH-10: one Answered event, nothing sent."""
    link = MllpAnalyzerLink(ack_timeout=5.0, frame=hl7_styles.MINDRAY_BC.frame,
                            reply_ids=lambda: "R1")
    link.send(request(), "7", 0.0)
    link.data_to_send()
    orr = build_orr_o02(parse_orm_o01(parse_message(request())), None, control_id="G3", now=NOW)
    link.receive_data(b"\x0b" + orr + b"\x1c\r", 0.5)
    (event,) = link.events()
    assert isinstance(event, Answered) and event.control_id == "7"
    assert event.answer.found is False and not link.busy and link.data_to_send() == b""


def test_a_recording_with_worklist_requests_replays_them_as_queries() -> None:
    """Both requests of mindray_bc_orm are found as queries, with the tube asked for."""
    found, report = messages(FIXTURE.read_bytes(), drivers.get("mindray-bc"))
    assert not report.problems
    assert [(r.kind, r.query, r.sample_id, r.control_id) for r in found] == [
        ("ORM^O01", True, "SampleID1", "9"), ("ORM^O01", True, "1905040011", "389")]


@pytest.mark.integration
def test_simulated_bc_asks_and_gets_not_found_from_receive() -> None:
    """``simulate --driver mindray-bc`` against ``receive``: each tube asked first and
    answered ORR^O02 AR (no order source there), then its results acknowledged."""
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--driver", "mindray-bc",
                              "--name", "bc1"])
    try:
        port = gateway.wait_for_status(r"bc1 listening on 127\.0\.0\.1:(\d+)").group(1)
        sim = simulate(["--driver", "mindray-bc", "--connect", f"127.0.0.1:{port}",
                        "--count", "2", "--interval", "0.1", "--seed", "3",
                        "--first-sample", "H0001", "--answer-timeout", "3"])
        status, lines, err = sim.finish()
        assert status == 0, err
    finally:
        gateway.stop()
    assert [(x["kind"], x["sample_id"], x["outcome"], x["detail"]) for x in lines] == [
        ("query", "H0001", "answered", "no order (MSA AR)"),
        ("results", "H0001", "acknowledged", ""),
        ("query", "H0002", "answered", "no order (MSA AR)"),
        ("results", "H0002", "acknowledged", "")]
