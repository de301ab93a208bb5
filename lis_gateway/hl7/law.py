"""IHE Laboratory Analytical Workflow (LAW, HL7 v2.5.1): the Analyzer Manager's side.

* LAB-27 query for work orders: the analyzer sends ``QBP^Q11^QBP_Q11`` with
  ``QPD|WOS^Work Order Step^IHE_LABTF|<query tag>|<container ID>``; the
  gateway answers ``RSP^K11^RSP_K11``: MSA, QAK (``OK`` when orders exist,
  ``NF`` when none; never silence), the QPD echoed.
* LAB-28 work order broadcast: ``OML^O33^OML_O33`` with one specimen group
  (SPM, SAC) and one ORC ``NW`` + TQ1 + OBR per test (an AWOS).

QPD-2 is the query tag and QPD-3 the container ID (SAC-3), as in the BA400
capture (corpus/biosystems_3.txt) and other public LAW implementations.
In LAW the RSP^K11 only acknowledges the query; the orders follow as OML^O33
**(verify per analyzer: some expect the orders inside the RSP)**.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .datatypes import (
    EntityIdentifier,
    HierarchicDesignator,
    MessageRoute,
    components,
    encode_text,
    format_optional_ts,
    format_ts,
    msh_segment,
)
from .delimiters import DEFAULT, Hl7Delimiters
from .errors import BuildError
from .message import Hl7Message, write_message, write_segment
from .patient import pid_segment
from .queries import ERROR_TEXTS, SPECIMEN_TYPES, OrderedSample, QueryProblem

#: QPD-1 of a LAB-27 query (HL7 table 0471 as profiled by IHE).
WOS_QUERY_NAME = "WOS^Work Order Step^IHE_LABTF"
#: MSH-21 of LAB-27 answers and of LAB-28 messages.
LAB27_PROFILE = EntityIdentifier("LAB-27", "IHE")
LAB28_PROFILE = EntityIdentifier("LAB-28", "IHE")


@dataclass(frozen=True, slots=True)
class WorkOrderQuery:
    """A parsed LAB-27 QBP^Q11."""

    control_id: str  #: MSH-10: MSA-2 of the answer
    route: MessageRoute  #: MSH-3..6 as sent; the answer goes back on ``route.reply()``
    query_tag: str  #: QPD-2: QAK-1 of the answer
    specimen_id: str  #: QPD-3: the container ID (SAC-3) the analyzer read
    qpd: tuple[str, ...]  #: QPD-1.. raw, re-encoded with ``^~\\&``, for the echo
    problems: tuple[QueryProblem, ...] = ()


def _reencode(raw: str, source: Hl7Delimiters) -> str:
    """A raw field from the sender's encoding characters into the default ones."""
    if source == DEFAULT:
        return raw
    return DEFAULT.repetition.join(
        DEFAULT.component.join(
            DEFAULT.subcomponent.join(encode_text(source.unescape(sub))
                                      for sub in comp.split(source.subcomponent))
            for comp in rep.split(source.component))
        for rep in raw.split(source.repetition))


def _hd(message: Hl7Message, n: int) -> HierarchicDesignator:
    comps = message.delimiters.components(message.msh[n])
    comps += [""] * (3 - len(comps))
    return HierarchicDesignator(comps[0], comps[1], comps[2])


def parse_qbp_q11(message: Hl7Message) -> WorkOrderQuery:
    """Read a LAB-27 QBP^Q11. Never raises: what is wrong is in ``problems``.

    Args:
        message: the query, parsed by :func:`~lis_gateway.hl7.message.parse_message`.

    Returns:
        The query; ``problems`` is empty when it can be answered.
    """
    d = message.delimiters
    problems: list[QueryProblem] = []
    if message.message_type != "QBP^Q11":
        problems.append(QueryProblem("MSH", 9, "200", f"not a QBP^Q11: {message.message_type}"))
    qpd = message.first("QPD")
    fields = tuple(_reencode(f, d) for f in qpd.fields[1:]) if qpd is not None else ()
    if qpd is None:
        problems.append(QueryProblem("QPD", 0, "100", "no QPD segment"))
    elif d.component_at(qpd[1], 1) != "WOS":
        problems.append(QueryProblem("QPD", 1, "103", f"unknown query {d.text(qpd[1])!r}"))
    tag = d.text(qpd[2]) if qpd is not None else ""
    specimen = d.component_at(qpd[3], 1) if qpd is not None else ""
    if qpd is not None and not tag:
        problems.append(QueryProblem("QPD", 2, "101", "no query tag"))
    if qpd is not None and not specimen:
        problems.append(QueryProblem("QPD", 3, "101", "no container ID"))
    route = MessageRoute(_hd(message, 3), _hd(message, 4), _hd(message, 5), _hd(message, 6))
    return WorkOrderQuery(message.control_id, route, tag, specimen, fields, tuple(problems))


def _err(problem: QueryProblem) -> str:
    location = components(problem.segment, "1", str(problem.field)) if problem.field else \
        components(problem.segment, "1")
    code = components(problem.code, ERROR_TEXTS.get(problem.code, ""), "HL70357")
    return write_segment(["ERR", "", location, code, "E", "", "", encode_text(problem.text)])


def build_rsp_k11(query: WorkOrderQuery, *, found: bool, control_id: str, now: datetime,
                  route: MessageRoute | None = None) -> bytes:
    """RSP^K11: the answer to a LAB-27 query.

    Args:
        query: the parsed query.
        found: the gateway has work orders for the container (OML^O33 follows).
        control_id: MSH-10.
        now: MSH-7 (with tzinfo).
        route: MSH-3..6; default: the query's route reversed.

    Returns:
        ``MSA|AA`` + ``QAK|<tag>|OK`` or ``NF`` + the QPD echoed; with problems,
        ``MSA|AE`` + ERR + ``QAK|<tag>|AE``.
    """
    status = "AE" if query.problems else ("OK" if found else "NF")
    segments = [msh_segment(route or query.route.reply(), "RSP^K11^RSP_K11",
                            control_id=control_id, timestamp=format_ts(now),
                            profiles=(LAB27_PROFILE,)),
                write_segment(["MSA", "AE" if query.problems else "AA",
                               encode_text(query.control_id)]),
                *[_err(p) for p in query.problems],
                write_segment(["QAK", encode_text(query.query_tag), status,
                               query.qpd[0] if query.qpd else WOS_QUERY_NAME])]
    segments.append(write_segment(["QPD", *(query.qpd or (WOS_QUERY_NAME,))]))
    return write_message(segments)


def _specimen_segments(sample: OrderedSample) -> list[str]:
    text = SPECIMEN_TYPES.get(sample.specimen_type, ("", ""))[0]
    kind = components(sample.specimen_type, text, "HL70487") if sample.specimen_type else ""
    # SPM-11 "P": a patient specimen (table 0369); QC specimens would be "Q".
    spm = ["SPM", "1", encode_text(sample.sample_id), "", kind, *([""] * 6), "P",
           *([""] * 5), format_optional_ts(sample.collected_at),
           format_optional_ts(sample.received_at)]
    return [write_segment(spm), write_segment(["SAC", "", "", encode_text(sample.sample_id)])]


def awos_id(sample: OrderedSample, test_code: str) -> str:
    """The AWOS ID (ORC-2 / OBR-2) of one test on one sample: ``<sample>-<test>``."""
    return f"{sample.sample_id}-{test_code}"


def build_oml_o33(sample: OrderedSample, *, route: MessageRoute, control_id: str,
                  now: datetime, coding_system: str = "99LOCAL", accept_ack: str = "NE",
                  application_ack: str = "AL") -> bytes:
    """OML^O33: the work orders (one AWOS per test) for one specimen (LAB-28).

    Args:
        sample: the tube and its tests; the patient's PID is sent when the
            patient has an identifier.
        route: MSH-3..6.
        control_id: MSH-10.
        now: MSH-7 and ORC-9 (with tzinfo).
        coding_system: OBR-4.3 of the test codes (the analyzer's code system).
        accept_ack: MSH-15.
        application_ack: MSH-16 (``AL``: the analyzer answers ORL^O34).

    Raises:
        BuildError: no sample ID, no tests, a test code repeated, a naive time.
    """
    if not sample.sample_id:
        raise BuildError("the sample has no ID (SPM-2, SAC-3)")
    codes = [code for code, _name in sample.tests]
    if not codes or len(set(codes)) != len(codes):
        raise BuildError(f"sample {sample.sample_id} needs tests, each code once: {codes}")
    stamp = format_ts(now)
    segments = [msh_segment(route, "OML^O33^OML_O33", control_id=control_id, timestamp=stamp,
                            accept_ack=accept_ack, application_ack=application_ack,
                            profiles=(LAB28_PROFILE,))]
    patient = sample.patient
    if patient.hospital_id or patient.national_id or patient.insurance_card:
        segments.append(pid_segment(patient))
    segments += _specimen_segments(sample)
    for set_id, (code, name) in enumerate(sample.tests, 1):
        order_id = encode_text(awos_id(sample, code))
        segments += [
            write_segment(["ORC", "NW", order_id, *([""] * 6), stamp]),
            write_segment(["TQ1", "1", *([""] * 7), sample.priority.value]),
            write_segment(["OBR", str(set_id), order_id, "",
                           components(code, name, coding_system)]),
        ]
    return write_message(segments)

