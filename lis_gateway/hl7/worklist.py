"""Mindray BC haematology worklist request (HL7 v2.3.1): ORM^O01 -> ORR^O02, sans-IO.

A BC analyzer that reads a tube's barcode asks the host for the tube's work
with an ORM^O01 whose ORC-1 is ``RF``; the host answers with one ORR^O02.
No Mindray manual is available here. What follows is from public
third-party descriptions only (sources in ``tests/fixtures/hl7/README.md``,
fixture ``mindray_bc_orm``), and none of it has been checked against a BC
analyzer:

* **The request** (known from several independent descriptions)::

      MSH|^~\\&|BC-5300|Mindray|||20081120174836||ORM^O01|9|P|2.3.1||||||UNICODE
      ORC|RF||SampleID1||IP

  ORC-1 ``RF``, ORC-3 the sample ID (the barcode read, or an ID typed on
  the analyzer), ORC-5 ``IP``. ORC-2 is read when ORC-3 is empty (said of
  some firmware, not seen). Some firmware adds ``OBX ... IS`` rows after
  the ORC (``OBX|1|IS|^BothLis Switch^||O||||||F``): they are kept in
  :attr:`WorklistRequest.settings` and change nothing.
* **Not found** (said to be the example of the BC-5300 operator's manual,
  pp. 489-490): an ORR^O02 with only ``MSA|AR|<the ORM's MSH-10>``. The
  analyzer then runs the tube with the settings on its screen.
* **Found**: ``MSA|AA|<MSH-10>``, then PID, PV1, ``ORC|AF|<sample>``, an OBR
  ``00001^Automated Count^99MRC`` with ``HM`` in OBR-24, and ``OBX ... IS``
  rows that set the run: ``08002^Blood Mode^99MRC`` = ``W`` (whole blood)
  and ``08003^Test Mode^99MRC`` = ``CBC`` or ``CBC+DIFF``.

What is inferred here, not documented anywhere we could read:

* the Test Mode is ``CBC+DIFF`` when any ordered test is a differential
  parameter (:data:`DIFFERENTIAL_PARAMETERS`, after dropping a trailing
  ``#`` or ``%``), else ``CBC``. One description writes ``CBC+5DIFF`` for a
  BC-5380; the BC-5130 capture (fixture mindray_4) reports ``CBC+DIFF``,
  which is what is sent. The Blood Mode is always ``W``: pre-diluted runs
  are not ordered from the HIS;
* PID-8 is written as the words ``Male`` / ``Female``, the form BC
  analyzers write in their own ORU^R01 (one third-party ORR writes ``F``);
  PID-7 is ``YYYYMMDD``; PID-5 is ``family^middle given`` (the analyzer's
  last and first name); PID-3 is ``<hospital patient ID>^^^^MR`` as the
  analyzer writes it (``MR`` is the dialect's word, not the gateway's PI);
* PV1 is sent as ``PV1|1``: the order carries no department or bed;
* MSH-18 ``UNICODE`` is UTF-8 (as the gateway reads the BC's own messages),
  so Vietnamese names keep their diacritics. Whether the analyzer's screen
  shows them is not known. MSH-3..6 are empty and MSH-7 is the wall time
  without offset, as in the other Mindray builders (:mod:`.queries`); each
  segment ends without a trailing separator, as the BC writes its own.

The analyzer is said to wait about 2 s for the answer: the lookup behind
:func:`build_orr_o02` must be a plain read (the adapter asks its order
source once, as for the other host queries).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .datatypes import components, encode_text, format_date, format_wall_time
from .delimiters import DEFAULT
from .errors import BuildError
from .message import Hl7Message, Segment, write_message, write_segment
from .patient import PatientIdentity, Sex
from .queries import OrderedSample, QueryProblem

#: MSH-9 of the request and of the answer.
REQUEST_TYPE = "ORM^O01"
ANSWER_TYPE = "ORR^O02"
#: ORC-1 of a worklist request ("refill order request" in HL7 table 0119).
REQUEST_CONTROL = "RF"
#: ORC-1 of the answer's order ("order/service refill request approved").
ANSWER_CONTROL = "AF"

#: Parameter names (without ``#`` / ``%``) that need the differential channel.
DIFFERENTIAL_PARAMETERS = frozenset({"NEU", "LYM", "MON", "EOS", "BAS", "MID", "GRAN",
                                     "ALY", "LIC"})

#: OBR-4 of the answer: the BC's "Automated Count" service.
AUTOMATED_COUNT = components("00001", "Automated Count", "99MRC")
#: OBR-24 of the answer: haematology.
HAEMATOLOGY_SECTION = "HM"
#: PID-8 as the BC writes it in its results.
SEX_WORDS: dict[Sex, str] = {Sex.MALE: "Male", Sex.FEMALE: "Female"}


class TestMode(enum.Enum):
    """OBX ``08003^Test Mode^99MRC`` of the answer."""

    __test__ = False  # not a pytest test class, whatever its name

    CBC = "CBC"  #: counts only
    CBC_DIFF = "CBC+DIFF"  #: counts and the white-cell differential


class BloodMode(enum.Enum):
    """OBX ``08002^Blood Mode^99MRC`` of the answer."""

    WHOLE_BLOOD = "W"  #: the only mode the gateway orders
    PREDILUTED = "P"  #: capillary blood diluted beforehand (not ordered from the HIS)


@dataclass(frozen=True, slots=True)
class WorklistRequest:
    """A parsed Mindray BC worklist request (ORM^O01, ORC-1 ``RF``)."""

    control_id: str  #: MSH-10: MSA-2 of the ORR^O02
    sample_id: str  #: ORC-3 component 1, or ORC-2's when ORC-3 is empty
    settings: tuple[tuple[str, str], ...] = ()  #: OBX IS rows: (OBX-3 name or code, OBX-5)
    problems: tuple[QueryProblem, ...] = ()


def is_worklist_request(message: Hl7Message) -> bool:
    """An ORM^O01 whose first ORC has ORC-1 ``RF``: the BC asking for a tube's work.

    Any other ORM^O01 (an HIS placing orders: ``NW``, ``CA``, ...) is not one.
    """
    if message.message_type != REQUEST_TYPE:
        return False
    orc = message.first("ORC")
    return orc is not None and orc[1].strip().upper() == REQUEST_CONTROL


def _settings(message: Hl7Message) -> tuple[tuple[str, str], ...]:
    d = message.delimiters
    rows = []
    for obx in message.named("OBX"):
        if obx[2].strip().upper() == "IS":
            name = d.component_at(obx[3], 2) or d.component_at(obx[3], 1)
            rows.append((name.strip(), d.text(obx[5]).strip()))
    return tuple(rows)


def _sample_id(orc: Segment, message: Hl7Message) -> str:
    d = message.delimiters
    return d.component_at(orc[3], 1).strip() or d.component_at(orc[2], 1).strip()


def parse_orm_o01(message: Hl7Message) -> WorklistRequest:
    """Read a worklist request. Never raises: what is wrong is in ``problems``.

    Args:
        message: the request, parsed by :func:`~lis_gateway.hl7.message.parse_message`.

    Returns:
        The request; ``problems`` is empty when it can be looked up.
    """
    problems: list[QueryProblem] = []
    if message.message_type != REQUEST_TYPE:
        problems.append(QueryProblem("MSH", 9, "200", f"not an ORM^O01: {message.message_type}"))
    orc = message.first("ORC")
    sample = ""
    if orc is None:
        problems.append(QueryProblem("ORC", 0, "100", "no ORC segment"))
    else:
        if orc[1].strip().upper() != REQUEST_CONTROL:
            problems.append(QueryProblem("ORC", 1, "103", f"ORC-1 {orc[1]!r} is not RF"))
        sample = _sample_id(orc, message)
        if not sample:
            problems.append(QueryProblem("ORC", 3, "101", "no sample ID (ORC-3 or ORC-2)"))
    return WorklistRequest(message.control_id, sample, _settings(message), tuple(problems))


def choose_test_mode(tests: Iterable[tuple[str, str]]) -> TestMode:
    """``CBC+DIFF`` when any ordered test (analyzer code, name) is a differential parameter.

    ``NEU#``, ``LYM%``, ``MON#``, ``ALY#``... count; ``WBC``, ``HGB``, ``PLT`` do not.
    """
    for code, _name in tests:
        if code.strip().upper().rstrip("#%") in DIFFERENTIAL_PARAMETERS:
            return TestMode.CBC_DIFF
    return TestMode.CBC


def _msh(control_id: str, now: datetime) -> str:
    if not control_id:
        raise BuildError("MSH-10 (message control ID) is empty")
    # MSH-3..6 empty, MSH-7 wall time without offset, MSH-18 UNICODE (the BC's own form).
    return write_segment(["MSH", DEFAULT.field, DEFAULT.encoding_characters, "", "", "", "",
                          format_wall_time(now), "", ANSWER_TYPE, encode_text(control_id), "P",
                          "2.3.1", "", "", "", "", "", "UNICODE"])


def _patient_id(patient: PatientIdentity) -> str:
    found = patient.hospital_id or patient.national_id or patient.insurance_card
    return components(found, "", "", "", "MR") if found else ""


def _pid(patient: PatientIdentity) -> str:
    first = " ".join(p for p in (patient.middle_name, patient.given_name) if p)
    return write_segment(["PID", "1", "", _patient_id(patient), "",
                          components(patient.family_name, first), "",
                          format_date(patient.birth_date), SEX_WORDS.get(patient.sex, "")])


def _order_segments(sample: OrderedSample) -> list[str]:
    sample_id = encode_text(sample.sample_id)
    collected = format_wall_time(sample.collected_at) if sample.collected_at else ""
    received = format_wall_time(sample.received_at) if sample.received_at else ""
    obr = ["OBR", "1", sample_id, "", AUTOMATED_COUNT, "", collected, *([""] * 7), received,
           *([""] * 9), HAEMATOLOGY_SECTION]
    run = [("08002", "Blood Mode", BloodMode.WHOLE_BLOOD.value),
           ("08003", "Test Mode", choose_test_mode(sample.tests).value)]
    return [write_segment(["ORC", ANSWER_CONTROL, sample_id]), write_segment(obr),
            *[write_segment(["OBX", str(n), "IS", components(code, name, "99MRC"), "", value,
                             "", "", "", "", "", "F"])
              for n, (code, name, value) in enumerate(run, 1)]]


def build_orr_o02(request: WorklistRequest, sample: OrderedSample | None, *,
                  control_id: str, now: datetime) -> bytes:
    """ORR^O02: the answer to a worklist request, in UTF-8.

    Args:
        request: the parsed request.
        sample: the tube's order, or None when the host has none (or the request
            has problems): the answer is then ``MSA|AR`` alone.
        control_id: MSH-10.
        now: MSH-7, written as wall time without offset.

    Returns:
        Not found: MSH + ``MSA|AR|<request MSH-10>``. Found: MSH, ``MSA|AA``,
        PID, PV1, ORC ``AF``, OBR, OBX Blood Mode and Test Mode.

    Raises:
        BuildError: an empty control ID, or a found sample without an ID or tests.
    """
    msh = _msh(control_id, now)
    if sample is None or request.problems:
        return write_message([msh, write_segment(["MSA", "AR", encode_text(request.control_id)])])
    if not sample.sample_id or not sample.tests:
        raise BuildError("the ordered sample needs an ID and at least one test")
    segments = [msh, write_segment(["MSA", "AA", encode_text(request.control_id)]),
                _pid(sample.patient), "PV1|1", *_order_segments(sample)]
    return write_message(segments)


def answer_for(request: WorklistRequest, samples: Sequence[OrderedSample]
               ) -> OrderedSample | None:
    """The sample to send: the one with the requested ID, else the first; None when none."""
    if request.problems or not samples:
        return None
    return next((s for s in samples if s.sample_id == request.sample_id), samples[0])
