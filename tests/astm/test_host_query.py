"""ASTM host queries read and answered (sans-IO): LIS2-A2 and Roche forms, protocols.md §2.4.

The Q records are those of the Roche cobas e 411 captures in
tests/fixtures/astm/roche_cobas/ (e411_tsreq_cobas.bin: ``^^000004^40^...``,
e411_query_elecsys.bin: ``^000004^40^...``), each followed by its cancel.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.codec import decode_records
from lis_gateway.astm.host_query import HostQuery, ReplySample, build_reply, host_queries
from lis_gateway.astm.records import HeaderRecord

NOW = datetime(2026, 11, 22, 9, 30, 0, tzinfo=UTC)


def message(*records: str) -> AstmMessage:
    """A received message made of these record texts."""
    text = "\r".join(records) + "\r"
    return AstmMessage(text.encode("latin-1"), decode_records(list(records)), True)


def test_the_specimen_is_found_in_both_cobas_forms_and_a_cancel_asks_nothing() -> None:
    """``^^000004^40...`` and ``^000004^40...`` both give 000004; Q-13 = A is no request."""
    tsreq = message("H|\\^&|||cobas^1|||||||TSREQ^REAL||P|1",
                    "Q|1|^^000004^40^0^5^^S1^SC||ALL||||||||O", "L|1|N")
    elecsys = message("H|\\^&|||H7600^1|||||||||P|1",
                      "Q|1|^000004^40^0^5^^SAMPLE^NORMAL||ALL||||||||O", "L|1|N")
    cancel = message("H|\\^&|||H7600^1|||||||||P|1",
                     "Q|1|^000004^40^0^5^^SAMPLE^NORMAL||ALL||||||||A", "L|1|N")
    assert host_queries(tsreq) == [HostQuery("000004", "000004^40^0^5^^S1^SC")]
    assert host_queries(elecsys) == [HostQuery("000004", "000004^40^0^5^^SAMPLE^NORMAL")]
    assert host_queries(cancel) == []
    results = message("H|\\^&", "P|1", "O|1|S1||^^^GLU", "R|1|^^^GLU|5.4", "L|1|N")
    assert host_queries(results) == []


def test_found_orders_are_sent_as_p_and_o_with_the_specimen_echoed() -> None:
    """H, P (patient, unaccented for latin-1), O (tests, stat, O-26 Q), L|1|F."""
    query = HostQuery("000004", "000004^40^0^5^^S1^SC")
    sample = ReplySample("000004", ("1", "7"), stat=True, patient_id="BN0001",
                         family_name="Nguyễn", given_name="An", middle_name="Văn",
                         birth_date="19800102", sex="M")
    reply = build_reply([query], {"000004": sample}, now=NOW, encoding="latin-1")
    assert reply.split(b"\r") == [
        b"H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|20261122093000",
        b"P|1|BN0001|||Nguyen^An^Van||19800102|M",
        b"O|1|000004^40^0^5^^S1^SC||^^^1\\^^^7|S|20261122093000|||||N||||||||||||||Q",
        b"L|1|F",
        b"",
    ]


def test_nothing_found_is_answered_no_information() -> None:
    """H, L|1|I: the analyzer is told there is no order, not left waiting."""
    reply = build_reply([HostQuery("X9", "X9")], {}, now=NOW)
    assert reply == b"H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|20261122093000\rL|1|I\r"


def test_utf8_links_keep_the_diacritics() -> None:
    """A link whose encoding carries Vietnamese gets the name as stored."""
    sample = ReplySample("S1", ("GLU",), family_name="Nguyễn", given_name="An")
    reply = build_reply([HostQuery("S1", "S1")], {"S1": sample}, now=NOW, encoding="utf-8")
    assert "\rP|1||||Nguyễn^An\r".encode() in reply


def test_a_download_carries_each_sample_with_its_action_code() -> None:
    """O-3 the barcode (escaped), O-12 N/A/C, O-26 O, L|1|N; names folded for latin-1."""
    from lis_gateway.astm.host_query import build_download

    new = ReplySample("CD0001", ("G1", "K1"), stat=True, patient_id="BN1",
                      family_name="Nguyễn", given_name="An", middle_name="Văn",
                      birth_date="19800102", sex="M")
    text = build_download([(new, "N"), (ReplySample("A|B", ("G1",)), "C")], now=NOW)
    assert text.decode("latin-1").split("\r") == [
        "H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|20261122093000",
        "P|1|BN1|||Nguyen^An^Van||19800102|M",
        "O|1|CD0001||^^^G1\\^^^K1|S|20261122093000|||||N||||||||||||||O",
        "P|2",
        "O|1|A&F&B||^^^G1|R|20261122093000|||||C||||||||||||||O",
        "L|1|N", ""]
    for bad in ([], [(ReplySample("X", ()), "N")], [(new, "R")]):
        try:
            build_download(bad, now=NOW)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


# --- Roche cobas e 411 answer forms (corpus roche_5, roche_6: the e 411 Host Interface
# Manual v2.3, pp. 50-51; the expected lines are the manual's examples) -------------------

COBAS_QUERY = ("H|\\^&|||cobas-e411^1|||||host|TSREQ^REAL|P|1",
               "Q|1|^^000004^40^0^5^^S1^SC||ALL||||||||O", "L|1|N")
DISK_QUERY = ("H|\\^&||||||||||P||", "Q|1|^000004^40^0^5^^SAMPLE^NORMAL||ALL||||||||O",
              "L|1|I")


def roche_reply(query: tuple[str, ...], orders: dict[str, ReplySample]) -> list[str]:
    """The roche-cobas driver's answer to ``query`` with these orders, as record lines."""
    from drivers.roche_cobas import reply_style

    msg = message(*query)
    style = reply_style(msg)
    head = msg.decoded.records[0]
    assert isinstance(head, HeaderRecord)
    reply = build_reply(host_queries(msg), orders, now=NOW, style=style, query_header=head)
    return reply.decode("latin-1").split("\r")


def test_the_cobas_form_is_answered_tsdwn_reply_with_the_keys_echoed_in_o4() -> None:
    """Example 1 of the manual (without the per-test dilution ``2``, which no order carries)."""
    found = {"000004": ReplySample("000004", ("10", "30", "40"), patient_id="BN1",
                                   family_name="Nguyễn")}
    assert roche_reply(COBAS_QUERY, found) == [
        "H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1",
        "P|1",
        "O|1|000004|40^0^5^^S1^SC|^^^10^\\^^^30^\\^^^40^|R||||||A||||1||||||||||O",
        "L|1|N", ""]


def test_the_cobas_form_without_orders_is_an_order_record_without_tests() -> None:
    """Example 2: the same O record, O-5 empty; the analyzer is not left waiting 15 s."""
    assert roche_reply(COBAS_QUERY, {}) == [
        "H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1",
        "P|1",
        "O|1|000004|40^0^5^^S1^SC||R||||||A||||1||||||||||O",
        "L|1|N", ""]


def test_the_disk_form_is_answered_with_an_empty_header_and_o26_q_or_z() -> None:
    """The disk (Elecsys) examples: ``H|\\^&||||||||||P||``, O-26 Q with tests, Z without, L|1|."""
    found = {"000004": ReplySample("000004", ("10", "30", "40"), stat=True)}
    assert roche_reply(DISK_QUERY, found) == [
        "H|\\^&||||||||||P||",
        "P|1",
        "O|1|000004|40^0^5^^SAMPLE^NORMAL|^^^10^\\^^^30^\\^^^40^|S||||||N||||||||||||||Q",
        "L|1|", ""]
    assert roche_reply(DISK_QUERY, {}) == [
        "H|\\^&||||||||||P||",
        "P|1",
        "O|1|000004|40^0^5^^SAMPLE^NORMAL||R||||||N||||||||||||||Z",
        "L|1|", ""]


def test_each_query_of_a_message_gets_its_own_answer_in_order() -> None:
    """Two Q records, one with orders and one without: two P/O pairs, in the query order."""
    query = (COBAS_QUERY[0], COBAS_QUERY[1], "Q|2|^^000005^41^0^6^^S2^MC||ALL||||||||O",
             "L|1|N")
    lines = roche_reply(query, {"000005": ReplySample("000005", ("685",))})
    assert lines[1:5] == [
        "P|1", "O|1|000004|40^0^5^^S1^SC||R||||||A||||1||||||||||O",
        "P|2", "O|1|000005|41^0^6^^S2^MC|^^^685^|R||||||A||||2||||||||||O"]
    assert lines[5] == "L|1|N"


def test_a_failed_lookup_keeps_the_familys_header() -> None:
    """``L|1|Q`` after the header the analyzer expects (TSDWN^REPLY, or the empty disk one)."""
    from drivers.roche_cobas import reply_style
    from lis_gateway.astm.host_query import build_error_reply

    msg = message(*COBAS_QUERY)
    head = msg.decoded.records[0]
    assert isinstance(head, HeaderRecord)
    assert build_error_reply(now=NOW, style=reply_style(msg), query_header=head) == (
        b"H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1\rL|1|Q\r")
    assert build_error_reply(now=NOW) == (
        b"H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|20261122093000\rL|1|Q\r")
