"""Each simulated family writes messages its driver reads, in the codes its mapping table maps.

No reactor, no socket: messages are built, framed as the family frames them
and decoded by the gateway's own offline decoder (``capture.decode_capture``).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

import drivers
from drivers.roche_cobas import read_queries
from lis_gateway.astm.assembler import AstmMessage, MessageAssembler
from lis_gateway.astm.frames import encode_frame, split_text
from lis_gateway.astm.host_query import (
    HostQuery,
    ReplySample,
    build_error_reply,
    build_reply,
    host_queries,
)
from lis_gateway.capture import decode_capture, normalize_report
from lis_gateway.config import SHIPPED_MAPPINGS
from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.law import build_oml_o33, build_rsp_k11, parse_qbp_q11
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.patient import PatientIdentity
from lis_gateway.hl7.queries import OrderedSample, build_dsr_q03, build_qck_q02, parse_qry_q02
from lis_gateway.mapping import load_table
from lis_gateway.sim import astm_styles, hl7_styles
from lis_gateway.sim.astm_styles import AstmStyle, read_reply
from lis_gateway.sim.content import make_sample, sample_id
from lis_gateway.sim.families import UnsupportedDriverError, style_for, supported
from lis_gateway.sim.hl7_styles import Hl7Style, ordered_tests, query_answer, reply_to

WHEN = datetime(2026, 3, 4, 9, 30, 15)


def _wire(style: AstmStyle | Hl7Style, seq: int, rng: random.Random) -> tuple[bytes, object]:
    """Sample ``seq`` as the family puts it on the wire (E1381 frames or its MLLP framing)."""
    sample = make_sample(seq, "S0001", style.panel(seq), WHEN, rng)
    if isinstance(style, AstmStyle):
        text = style.message(sample)
        frames = split_text(text, max_text=style.max_text, per_record=style.per_record_frames)
        return (b"\x05" + b"".join(encode_frame(i, t, final=f)
                                   for i, (t, f) in enumerate(frames, 1)) + b"\x04", sample)
    return style.frame(style.build(sample, str(seq))), sample


@pytest.mark.parametrize("name", supported())
def test_every_family_is_read_by_its_driver_and_mapped(name: str) -> None:
    """Sample ID where the driver looks, every code reportable, mapped, units convertible."""
    spec = drivers.get(name)
    style = style_for(spec)
    table = load_table([SHIPPED_MAPPINGS], spec.table_name)
    rng = random.Random(11)
    for seq in (1, 2, 3):
        data, sample = _wire(style, seq, rng)
        report = decode_capture(data, spec)
        assert len(report.messages) == 1, report.problems
        assert not [p for p in report.problems if "error" in p], report.problems
        results = normalize_report(report, spec, table)
        assert [r.row.sample_id for _n, r in results] == [sample.sample_id] * len(sample.results)
        assert [r.row.test for _n, r in results] == list(sample.codes)
        assert [r.row.value.rstrip("^") for _n, r in results] == \
            [m.value for m in sample.results]
        if table is not None:  # generic-astm and generic-hl7 ship no table
            for _n, r in results:
                assert r.code, (r.row.test, r.problems)
                assert not [p for p in r.problems if p.startswith(("not-mapped", "unit"))], \
                    (r.row.test, r.problems)


#: The simulated drivers with a shipped mapping table (generic-astm and generic-hl7 have none).
WITH_TABLES = [n for n in supported() if (SHIPPED_MAPPINGS / f"{n}.csv").exists()]


def test_only_the_generic_drivers_ship_no_table() -> None:
    """The table check below covers every specific family."""
    assert sorted(set(supported()) - set(WITH_TABLES)) == ["generic-astm", "generic-hl7"]


@pytest.mark.parametrize("name", WITH_TABLES)
def test_panels_use_the_codes_and_units_of_the_mapping_table(name: str) -> None:
    """Every analyte is a row of the shipped table, written in the table's analyzer unit."""
    spec = drivers.get(name)
    table = load_table([SHIPPED_MAPPINGS], spec.table_name)
    assert table is not None
    for panel in style_for(spec).panels:
        for analyte in panel:
            entry = table.lookup(analyte.code)
            assert entry is not None, analyte.code
            assert entry.analyzer_unit.strip() == analyte.unit.strip(), analyte.code


def test_same_seed_same_messages_and_values_wander() -> None:
    """A seed repeats a run byte for byte; values differ from sample to sample."""
    style = astm_styles.SYSMEX
    first = [_wire(style, seq, random.Random(5))[0] for seq in (1, 2)]
    again = [_wire(style, seq, random.Random(5))[0] for seq in (1, 2)]
    assert first == again
    rng = random.Random(5)
    wbc = {make_sample(seq, "A1", style.panel(seq), WHEN, rng).results[0].value
           for seq in range(1, 21)}
    assert len(wbc) > 10
    assert all(float(v) > 0 for v in wbc)


def test_patients_are_made_up_and_folded_for_8_bit_analyzers() -> None:
    """ASTM messages carry names without diacritics; HL7 UTF-8 ones keep them."""
    rng = random.Random(2)
    sample = make_sample(1, "X1", astm_styles.GENERIC_CHEMISTRY, WHEN, rng)
    text = astm_styles.GENERIC.message(sample)
    assert sample.patient.folded().family_name.encode("ascii") in text
    assert sample.patient.patient_id.startswith("SIM")
    hl7 = hl7_styles.MINDRAY_BC.build(sample, "1")
    assert sample.patient.family_name.encode("utf-8") in hl7


def test_sample_ids_count_up_from_the_first() -> None:
    """The trailing number of the first barcode counts up, keeping its width."""
    assert [sample_id("S0098", n) for n in (1, 2, 3)] == ["S0098", "S0099", "S0100"]
    assert sample_id("TUBE", 2) == "TUBE-2"


def test_beckman_au_is_refused_with_its_reason() -> None:
    """The simulator has no AU online style (the gateway's link exists): it says so."""
    with pytest.raises(UnsupportedDriverError, match="no AU style yet"):
        style_for(drivers.get("beckman-au"))


def test_every_driver_is_simulated_or_refused() -> None:
    """A new driver without a style is noticed here."""
    for name, spec in drivers.REGISTRY.items():
        if name == "beckman-au":
            continue
        assert style_for(spec).driver == name


# ------------------------------------------------------------------ queries


def _astm(records: bytes) -> AstmMessage:
    (msg,) = MessageAssembler("latin-1").add_text(records, block_end=True)
    assert isinstance(msg, AstmMessage)
    return msg


@pytest.mark.parametrize("name", ["sysmex-xn", "abbott-architect", "beckman-access",
                                  "cepheid-genexpert", "horiba-yumizen", "roche-cobas"])
def test_astm_queries_are_understood_by_the_gateway(name: str) -> None:
    """The gateway reads the barcode out of each family's Q record; a cancel asks nothing."""
    style = astm_styles.STYLES[name]
    msg = _astm(style.query_message("2603040007", WHEN))
    assert [q.barcode for q in host_queries(msg)] == ["2603040007"]
    if style.cancels_queries:
        cancel = _astm(style.query_message("2603040007", WHEN, cancel=True))
        assert host_queries(cancel) == []
        assert [q.cancel for q in read_queries(cancel)] == [True]


def test_hl7_queries_are_understood_by_the_gateway() -> None:
    """QRY^Q02 carries the bar code in QRD-8, QBP^Q11 in QPD-3."""
    assert hl7_styles.MINDRAY_BS.query is not None and hl7_styles.BIOSYSTEMS.query is not None
    qry = parse_qry_q02(parse_message(hl7_styles.MINDRAY_BS.query("0019", WHEN, "7")))
    assert (qry.barcode, qry.control_id, qry.problems) == ("0019", "7", ())
    qbp = parse_qbp_q11(parse_message(hl7_styles.BIOSYSTEMS.query("32971968", WHEN, "c-1")))
    assert (qbp.specimen_id, qbp.problems) == ("32971968", ())




def test_astm_replies_are_read_back() -> None:
    """The gateway's LIS2-A2 reply: tests when found, L|1|I when not, L|1|Q when it failed."""
    now = datetime(2026, 3, 4, 9, 31, tzinfo=UTC)
    query = HostQuery("2603040007", "2603040007")
    found = build_reply([query], {"2603040007": ReplySample("2603040007", ("989", "990"))},
                        now=now)
    assert read_reply(_astm(found)).tests == ("989", "990")
    none = read_reply(_astm(build_reply([query], {}, now=now)))
    assert (none.found, none.detail) == (False, "no order (L|1|I)")
    failed = read_reply(_astm(build_error_reply(now=now)))
    assert failed.found is None


def test_hl7_answers_and_downloads_are_read_and_answered() -> None:
    """QCK/RSP say found or not; DSR^Q03 and OML^O33 carry tests and get ACK^Q03 / ORL^O34."""
    now = datetime(2026, 3, 4, 9, 31, tzinfo=UTC)
    assert hl7_styles.MINDRAY_BS.query is not None and hl7_styles.BIOSYSTEMS.query is not None
    qry = parse_qry_q02(parse_message(hl7_styles.MINDRAY_BS.query("0019", WHEN, "7")))
    for found, expected in ((True, True), (False, False)):
        answer = query_answer(parse_message(build_qck_q02(qry, found=found, control_id="G1",
                                                          now=now)))
        assert answer is not None and answer.found is expected
    sample = OrderedSample("0019", (("5", "ALT"), ("6", "AST")),
                           PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"),
                                           family_name="Doe"))
    dsr = parse_message(build_dsr_q03(sample, query=qry, control_id="G2", now=now))
    assert ordered_tests(dsr) == ("5", "6")
    ack = reply_to(dsr, "R1", now)
    assert ack is not None
    ack_msg = parse_message(ack)
    msa = ack_msg.first("MSA")
    assert msa is not None and (ack_msg.message_type, msa[2]) == ("ACK^Q03", "G2")
    qbp = parse_qbp_q11(parse_message(hl7_styles.BIOSYSTEMS.query("0019", WHEN, "c-1")))
    rsp = query_answer(parse_message(build_rsp_k11(qbp, found=False, control_id="G3", now=now)))
    assert rsp is not None and rsp.found is False
    route = MessageRoute(HierarchicDesignator("LIS"), HierarchicDesignator("LAB"),
                         HierarchicDesignator("BA400"), HierarchicDesignator("Biosystems"))
    oml = parse_message(build_oml_o33(sample, route=route, control_id="G4", now=now))
    assert ordered_tests(oml) == ("5", "6")
    orl = reply_to(oml, "R2", now)
    assert orl is not None and parse_message(orl).message_type == "ORL^O34"
    orl_msa = parse_message(orl).first("MSA")
    assert orl_msa is not None and orl_msa[2] == "G4"
