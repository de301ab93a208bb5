"""ASTM host queries (LIS2-A2 Q records) and the gateway's reply (sans-IO).

The flow (protocols.md §2.4): the analyzer sends ``H, Q|1|^<specimen>...||ALL
...|O, L`` in its own session; after its EOT the gateway bids and sends

* found: ``H, P, O (O-5 the tests, O-26 = Q), L|1|F``, one P/O pair per
  sample, the O-3 specimen field echoing the analyzer's Q-3 components from
  the specimen on (sequence, rack, position: some analyzers skip the sample
  when they change);
* nothing found: ``H, L|1|I`` ("no information available from last query").

Vendors answer in other forms; a driver picks one :class:`ReplyStyle` per
query message (``DriverSpec.astm_reply``). :data:`LIS2_A2` is the form above;
:data:`COBAS_TSDWN` and :data:`ELECSYS_DISK` are the two forms of the Roche
cobas e 411 manual (corpus roche_5 and roche_6): O-3 the barcode and O-4 the
analyzer's own keys echoed, and "no order" written as an O record without
tests rather than as ``L|1|I``.

A Q-13 of ``A`` is the analyzer cancelling its last request and asks for no
reply.

Names and text are written in the link's encoding; what it cannot carry is
folded to bare letters (``Nguyễn`` -> ``Nguyen``), the store keeps the
original.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.text import strip_diacritics

from .assembler import AstmMessage
from .codec import encode_message
from .delimiters import DEFAULT, Delimiters
from .records import HeaderRecord, OrderRecord, PatientRecord, QueryRecord, TerminatorRecord


@dataclass(frozen=True, slots=True)
class HostQuery:
    """One Q record asking for the orders of one sample.

    Attributes:
        barcode: the specimen ID: the first non-empty Q-3 component after the
            patient ID (component 2 in LIS2-A2, 3 in the cobas TSREQ form), else
            component 1.
        specimen_field: Q-3 components from the specimen on, as sent (echoed in O-3).
    """

    barcode: str
    specimen_field: str


@dataclass(frozen=True, slots=True)
class ReplySample:
    """What the gateway knows of one queried sample (from the HIS's orders)."""

    barcode: str
    tests: tuple[str, ...]  #: this analyzer's test codes
    stat: bool = False
    patient_id: str = ""  #: P-3, the hospital patient code
    family_name: str = ""
    given_name: str = ""
    middle_name: str = ""
    birth_date: str = ""  #: YYYYMMDD
    sex: str = ""  #: M, F or U


def host_queries(msg: AstmMessage) -> list[HostQuery]:
    """The sample requests in a received message (none for results, or a cancel)."""
    out: list[HostQuery] = []
    delims = msg.decoded.delimiters
    for record in msg.decoded.records:
        if not isinstance(record, QueryRecord) or record.status_code.upper() == "A":
            continue
        parts = record.starting_range.split(delims.component)
        # the specimen is the first non-empty component after the patient ID:
        # ^SPEC^seq^rack (LIS2-A2, Elecsys), ^^SPEC^seq^rack (cobas TSREQ)
        at = next((i for i in range(1, len(parts)) if parts[i].strip()), 0)
        barcode = parts[at].strip()
        if barcode and barcode.upper() != "ALL":
            out.append(HostQuery(barcode, delims.component.join(parts[at:])))
    return out


def fold(text: str, encoding: str) -> str:
    """``text`` if ``encoding`` can carry it, else without diacritics."""
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return strip_diacritics(text).encode(encoding, "replace").decode(encoding)


def _safe(text: str, delims: Delimiters, encoding: str) -> str:
    return delims.escape_text(fold(text, encoding))


def _header(now: datetime, sender: str) -> HeaderRecord:
    return HeaderRecord(sender_id=sender, processing_id="P", version="LIS2-A2",
                        timestamp=now.strftime("%Y%m%d%H%M%S"))


def _gateway_header(_query: HeaderRecord | None, now: datetime, sender: str) -> HeaderRecord:
    """LIS2-A2: our name in H-5, version and time."""
    return _header(now, sender)


def _swapped_header(query: HeaderRecord | None, _now: datetime, sender: str) -> HeaderRecord:
    """cobas ``TSDWN^REPLY``: H-5 the query's receiver ``^1``, H-10 the query's sender.

    ``H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1`` answers
    ``H|\\^&|||cobas-e411^1|||||host|TSREQ^REAL|P|1`` (e 411 manual, corpus roche_5).
    """
    ours = (query.receiver_id if query is not None else "") or sender
    theirs = query.sender_id if query is not None else ""
    return HeaderRecord(sender_id=f"{ours.split('^', 1)[0]}^1",
                        receiver_id=theirs.split("^", 1)[0], comment="TSDWN^REPLY",
                        processing_id="P", version="1")


def _empty_header(_query: HeaderRecord | None, _now: datetime, _sender: str) -> HeaderRecord:
    """e 411 disk (Elecsys) format: ``H|\\^&||||||||||P||``, nothing but H-12."""
    return HeaderRecord(processing_id="P", field_count=14)


def _no_descriptor(_query: HostQuery) -> str:
    return ""


def cobas_sample_type(query: HostQuery) -> str:
    """O-16 of a cobas answer: the digit of the query's ``S1``..``S5`` sample type.

    The manual's one example answers ``...^^S1^SC`` with O-16 = ``1``; that
    the other types follow (``S2`` -> ``2``) is read from that example, not
    stated in it.
    """
    for comp in query.specimen_field.split("^")[1:]:
        if len(comp) == 2 and comp[0] == "S" and comp[1].isdigit():
            return comp[1]
    return ""


@dataclass(frozen=True, slots=True)
class ReplyStyle:
    """How one analyzer family wants host-query answers written (data, plus two hooks).

    Attributes:
        name: for logs and the driver list.
        header: the H record of the answer, from the query's H (None if it had none).
        split_specimen: O-3 the barcode and O-4 the rest of the query's Q-3 (Roche),
            instead of O-3 = the Q-3 components from the specimen on (LIS2-A2).
        demographics: the P record carries the patient (else a bare ``P|n``).
        test_suffix: written after each test code in O-5 (Roche: ``^``, the empty
            dilution component).
        requested_at: O-7 carries the answer's time.
        found_action, found_report_type, found_termination: O-12, O-26, L-3 when
            orders were found.
        missing_order: a sample without orders is answered with an O record without
            tests (O-12 ``missing_action``, O-26 ``missing_report_type``); else it is
            left out and, when nothing is found at all, L-3 is ``none_termination``.
        specimen_descriptor: O-16 from the query.
    """

    name: str
    header: Callable[[HeaderRecord | None, datetime, str], HeaderRecord] = _gateway_header
    split_specimen: bool = False
    demographics: bool = True
    test_suffix: str = ""
    requested_at: bool = True
    found_action: str = "N"
    found_report_type: str = "Q"
    found_termination: str = "F"
    missing_order: bool = False
    missing_action: str = "N"
    missing_report_type: str = "Z"
    none_termination: str = "I"
    specimen_descriptor: Callable[[HostQuery], str] = _no_descriptor


#: CLSI LIS2-A2: found -> P/O with O-26 ``Q`` and ``L|1|F``; nothing -> ``H, L|1|I``.
LIS2_A2 = ReplyStyle("lis2-a2")

#: Roche cobas e 411 "cobas" format (H-11 ``TSDWN^REPLY``; corpus roche_5): O-12
#: ``A``, O-16 the sample type, O-26 ``O``, ``L|1|N``; no order -> the same O without tests.
COBAS_TSDWN = ReplyStyle(
    "cobas-tsdwn", header=_swapped_header, split_specimen=True, demographics=False,
    test_suffix="^", requested_at=False, found_action="A", found_report_type="O",
    found_termination="N", missing_order=True, missing_action="A", missing_report_type="O",
    none_termination="N", specimen_descriptor=cobas_sample_type)

#: Roche cobas e 411 disk (Elecsys) format (corpus roche_6): empty H, O-12 ``N``,
#: O-26 ``Q`` with tests or ``Z`` without, ``L|1|`` (no termination code).
ELECSYS_DISK = ReplyStyle(
    "elecsys-disk", header=_empty_header, split_specimen=True, demographics=False,
    test_suffix="^", requested_at=False, found_action="N", found_report_type="Q",
    found_termination="", missing_order=True, missing_action="N", missing_report_type="Z",
    none_termination="")


def build_error_reply(*, now: datetime, encoding: str = "latin-1",
                      sender: str = "LIS-GATEWAY", style: ReplyStyle = LIS2_A2,
                      query_header: HeaderRecord | None = None) -> bytes:
    """``H, L|1|Q``: "error in last request for information" (the lookup failed)."""
    return encode_message([style.header(query_header, now, sender),
                           TerminatorRecord(sequence="1", termination_code="Q")],
                          encoding=encoding)


def _sample_records(number: int, specimen_field: str, sample: ReplySample, *,
                    action: str, report_type: str, stamp: str, delimiters: Delimiters,
                    encoding: str, instrument_specimen: str = "", test_suffix: str = "",
                    demographics: bool = True, descriptor: str = ""
                    ) -> tuple[PatientRecord, OrderRecord]:
    """The P and O records of one sample (P-2 = ``number``)."""
    d = delimiters
    tests = d.repeat.join(f"{d.component * 3}{_safe(t, d, encoding)}{test_suffix}"
                          for t in sample.tests)
    order = OrderRecord(sequence="1", specimen_id=specimen_field,
                        instrument_specimen_id=instrument_specimen, universal_test_id=tests,
                        priority="S" if sample.stat else "R", requested_at=stamp,
                        action_code=action, specimen_descriptor=descriptor,
                        report_type=report_type)
    if not demographics:
        return PatientRecord(sequence=str(number)), order
    name = d.component.join(_safe(p, d, encoding) for p in (
        sample.family_name, sample.given_name, sample.middle_name)).rstrip(d.component)
    return (PatientRecord(sequence=str(number),
                          practice_patient_id=_safe(sample.patient_id, d, encoding),
                          name=name, birthdate=sample.birth_date, sex=sample.sex), order)


def build_reply(queries: Sequence[HostQuery], found: Mapping[str, ReplySample], *,
                now: datetime, encoding: str = "latin-1", sender: str = "LIS-GATEWAY",
                delimiters: Delimiters = DEFAULT, style: ReplyStyle = LIS2_A2,
                query_header: HeaderRecord | None = None) -> bytes:
    """The reply message to ``queries`` (records ending in CR, not framed).

    Args:
        queries: the query message's requests, in order.
        found: the orders found, by barcode.
        now: the answer's time (H-14, O-7 where the style writes them).
        encoding: the link's encoding (names it cannot carry are folded).
        sender: our name in H-5 (LIS2-A2).
        delimiters: the delimiters to write.
        style: the analyzer family's answer form.
        query_header: the query's H record (the cobas form swaps sender and receiver).
    """
    stamp = now.strftime("%Y%m%d%H%M%S") if style.requested_at else ""
    records: list[HeaderRecord | PatientRecord | OrderRecord | TerminatorRecord] = [
        style.header(query_header, now, sender)]
    number = found_any = 0
    for query in queries:
        sample = found.get(query.barcode)
        has_tests = sample is not None and bool(sample.tests)
        if not has_tests and not style.missing_order:
            continue
        number += 1
        found_any += has_tests
        specimen, instrument = query.specimen_field, ""
        if style.split_specimen:
            head, _, instrument = query.specimen_field.partition(delimiters.component)
            specimen = head
        reply = sample if sample is not None and has_tests else ReplySample(query.barcode, ())
        records.extend(_sample_records(
            number, specimen, reply,
            action=style.found_action if has_tests else style.missing_action,
            report_type=style.found_report_type if has_tests else style.missing_report_type,
            stamp=stamp, delimiters=delimiters, encoding=encoding,
            instrument_specimen=instrument, test_suffix=style.test_suffix,
            demographics=style.demographics, descriptor=style.specimen_descriptor(query)))
    termination = style.found_termination if found_any else style.none_termination
    records.append(TerminatorRecord(sequence="1", termination_code=termination,
                                    field_count=3))
    return encode_message(records, delimiters, encoding)


#: O-12 action codes of a download (LIS2-A2 8.4.12).
ACTION_NEW = "N"  #: new requests accompanying a new specimen
ACTION_ADD = "A"  #: add the requested tests to an existing specimen (also: a rerun)
ACTION_CANCEL = "C"  #: cancel the request


def build_download(samples: Sequence[tuple[ReplySample, str]], *, now: datetime,
                   encoding: str = "latin-1", sender: str = "LIS-GATEWAY",
                   delimiters: Delimiters = DEFAULT) -> bytes:
    """Work pushed to an analyzer unasked: ``H``, a ``P``/``O`` pair per sample, ``L|1|N``.

    Each sample comes with its O-12 action code (:data:`ACTION_NEW`,
    :data:`ACTION_ADD`, :data:`ACTION_CANCEL`); O-26 is ``O`` (an order),
    O-3 the barcode.

    Raises:
        ValueError: no sample, a sample with no test, or an unknown action code.
    """
    if not samples:
        raise ValueError("a download needs at least one sample")
    stamp = now.strftime("%Y%m%d%H%M%S")
    records: list[HeaderRecord | PatientRecord | OrderRecord | TerminatorRecord] = [
        _header(now, sender)]
    for number, (sample, action) in enumerate(samples, start=1):
        if not sample.tests:
            raise ValueError(f"sample {sample.barcode!r} has no test to download")
        if action not in (ACTION_NEW, ACTION_ADD, ACTION_CANCEL):
            raise ValueError(f"unknown O-12 action code {action!r}")
        records.extend(_sample_records(number, delimiters.escape_text(sample.barcode), sample,
                                       action=action, report_type="O", stamp=stamp,
                                       delimiters=delimiters, encoding=encoding))
    records.append(TerminatorRecord(sequence="1", termination_code="N"))
    return encode_message(records, delimiters, encoding)
