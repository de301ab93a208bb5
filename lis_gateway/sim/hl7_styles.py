"""HL7 v2 messages as each analyzer family writes them, and what they answer (pure).

Each :class:`Hl7Style` copies the segment layout of its family's fixtures
(``tests/fixtures/hl7``) and uses the codes and units of its mapping table:

* ``mindray-bc``: ORU^R01 v2.3.1 (BC-5380 layout of mindray_4: sample ID in
  OBR-3, ``IS`` run-mode rows, LOINC^name^LN in OBX-3); asks the worklist
  request ORM^O01 (``ORC|RF||<sample>||IP``, fixture mindray_bc_orm), which
  the gateway answers with one ORR^O02;
* ``mindray-bs``: ORU^R01 v2.3.1 of the Mindray host interface (bar code in
  OBR-2, channel number in OBX-3 and name in OBX-4, padded units, OBX-8
  ``N``, MSH-16 ``0``); asks QRY^Q02 and answers each DSR^Q03 with ACK^Q03;
* ``biosystems-ba``: IHE LAW OUL^R22 v2.5.1 (no PID, SPM-2, one OBR/ORC/OBX
  per test, UUID control IDs); asks QBP^Q11 and answers each OML^O33 with
  ORL^O34;
* ``snibe-maglumi``: OUL^R22 v2.5 with ``NE|NE`` and **no FS**: each message
  ends ``CR CR LF`` and the gateway ends it after a moment of silence, as it
  does for the real MAGLUMI;
* ``generic-hl7``: a plain ORU^R01 v2.5.

Control IDs and times are arguments; nothing here reads a clock.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.hl7.message import Hl7Message, write_message
from lis_gateway.hl7.mllp import CR, FS, VT

from .astm_styles import QueryAnswer
from .content import Analyte, Sample, stamp

#: Builds a result message: (sample, control ID) -> bytes.
MessageBuilder = Callable[[Sample, str], bytes]
#: Builds a host query: (barcode, time, control ID) -> bytes.
QueryBuilder = Callable[[str, datetime, str], bytes]


@dataclass(frozen=True, slots=True)
class Hl7Style:
    """One HL7 family's way of writing messages.

    Attributes:
        driver: the driver name the style is for.
        model: the analyzer it imitates.
        panels: the test panels, used in turn.
        build: the result message of a sample.
        query: the host query, or None when the family does not ask.
        prefix, suffix: the bytes around each message on the wire (``VT`` and
            ``FS CR`` by MLLP; Snibe ends with ``CR LF`` and no FS).
        uuid_ids: control IDs are UUIDs (BA400) rather than a counter.
    """

    driver: str
    model: str
    panels: tuple[tuple[Analyte, ...], ...]
    build: MessageBuilder
    query: QueryBuilder | None = None
    prefix: bytes = VT
    suffix: bytes = FS + CR
    uuid_ids: bool = False

    def panel(self, seq: int) -> tuple[Analyte, ...]:
        """The panel of sample ``seq``."""
        return self.panels[(seq - 1) % len(self.panels)]

    def frame(self, message: bytes) -> bytes:
        """``message`` as this family puts it on the wire."""
        return self.prefix + message + self.suffix

    def control_id(self, number: int, rng: random.Random) -> str:
        """MSH-10 of the ``number``-th message of the run."""
        if self.uuid_ids:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return str(number)


def _sex_word(sex: str) -> str:
    return {"M": "Male", "F": "Female"}.get(sex, "Unknown")


# ------------------------------------------------------------------ Mindray BC

MINDRAY_BC_PANEL = (
    Analyte("WBC", "10*3/uL", 7.0, 2.0, 2, 4.0, 10.0, loinc="6690-2"),
    Analyte("BAS#", "10*3/uL", 0.03, 0.02, 2, 0.0, 0.1, loinc="704-7"),
    Analyte("BAS%", "%", 0.5, 0.3, 1, 0.0, 1.0, loinc="706-2"),
    Analyte("NEU#", "10*3/uL", 4.1, 1.5, 2, 2.0, 7.0, loinc="751-8"),
    Analyte("NEU%", "%", 58.0, 9.0, 1, 50.0, 70.0, loinc="770-8"),
    Analyte("EOS#", "10*3/uL", 0.2, 0.1, 2, 0.02, 0.5, loinc="711-2"),
    Analyte("EOS%", "%", 3.0, 1.5, 1, 0.5, 5.0, loinc="713-8"),
    Analyte("LYM#", "10*3/uL", 2.1, 0.6, 2, 0.8, 4.0, loinc="731-0"),
    Analyte("LYM%", "%", 30.0, 8.0, 1, 20.0, 40.0, loinc="736-9"),
    Analyte("MON#", "10*3/uL", 0.5, 0.15, 2, 0.12, 1.2, loinc="742-7"),
    Analyte("MON%", "%", 7.0, 2.0, 1, 3.0, 12.0, loinc="5905-5"),
    Analyte("RBC", "10*6/uL", 4.6, 0.5, 2, 3.5, 5.5, loinc="789-8"),
    Analyte("HGB", "g/dL", 13.5, 1.6, 1, 11.0, 16.0, loinc="718-7"),
    Analyte("MCV", "fL", 88.0, 6.0, 1, 80.0, 100.0, loinc="787-2"),
    Analyte("MCH", "pg", 29.5, 2.0, 1, 27.0, 34.0, loinc="785-6"),
    Analyte("MCHC", "g/dL", 33.5, 1.0, 1, 32.0, 36.0, loinc="786-4"),
    Analyte("RDW-CV", "%", 13.2, 1.2, 1, 11.0, 16.0, loinc="788-0"),
    Analyte("RDW-SD", "fL", 42.0, 4.0, 1, 35.0, 56.0, loinc="21000-5"),
    Analyte("HCT", "%", 41.0, 4.5, 1, 37.0, 54.0, loinc="4544-3"),
    Analyte("PLT", "10*3/uL", 250, 70, 0, 100, 300, loinc="777-3"),
    Analyte("MPV", "fL", 9.5, 1.0, 1, 7.0, 11.0, loinc="32623-1"),
    Analyte("PDW", "", 15.5, 1.2, 1, 9.0, 17.0, loinc="32207-3"),
    Analyte("PCT", "%", 0.24, 0.05, 3, 0.108, 0.282, loinc="10002"),
    Analyte("PLCC", "10*3/uL", 55, 15, 0, 30, 90, loinc="10013"),
    Analyte("PLCR", "%", 22.0, 7.0, 1, 11.0, 45.0, loinc="10014"),
)
MINDRAY_RUN_MODES = (("08001", "Take Mode", "O"), ("08002", "Blood Mode", "W"),
                     ("08003", "Test Mode", "CBC+DIFF"), ("01002", "Ref Group", "General"))


def _mindray_bc(s: Sample, control_id: str) -> bytes:
    p = s.patient
    ts = stamp(s.when)
    segments = [f"MSH|^~\\&|Mindray|BC-5380|||{ts}||ORU^R01|{control_id}|P|2.3.1||||||UNICODE",
                f"PID|1||{p.patient_id}^^^^MR||{p.family_name}^{p.given_name}||"
                f"{p.birth_date}000000|{_sex_word(p.sex)}",
                "PV1|1",
                f"OBR|1||{s.sample_id}|00001^Automated Count^99MRC|||{ts}|||||||||||||||||HM"
                "||||||||Administrator"]
    segments += [f"OBX|{i}|IS|{code}^{name}^99MRC||{value}||||||F"
                 for i, (code, name, value) in enumerate(MINDRAY_RUN_MODES, 1)]
    first = len(MINDRAY_RUN_MODES) + 1
    for i, m in enumerate(s.results, first):
        a = m.analyte
        system = "LN" if "-" in a.loinc else "99MRC"
        segments.append(f"OBX|{i}|NM|{a.loinc}^{a.code}^{system}||{m.value}|{a.unit}|"
                        f"{a.range_text()}|{m.flag}|||F")
    return write_message(segments)


def _mindray_bc_orm(barcode: str, when: datetime, control_id: str) -> bytes:
    # mindray_bc_orm: the worklist request, ORC-1 RF, ORC-3 the sample, ORC-5 IP
    return write_message([f"MSH|^~\\&|BC-5380|Mindray|||{stamp(when)}||ORM^O01|{control_id}|P|"
                          "2.3.1||||||UNICODE",
                          f"ORC|RF||{barcode}||IP"])


MINDRAY_BC = Hl7Style("mindray-bc", "Mindray BC-5380", (MINDRAY_BC_PANEL,), _mindray_bc,
                      _mindray_bc_orm)


# ------------------------------------------------------------------ Mindray BS

MINDRAY_BS_PANEL = (
    Analyte("TBil", "umol/L", 11.0, 5.0, 1, 3.4, 20.5, channel="2"),
    Analyte("ALT", "U/L", 25, 12, 0, 0, 40, channel="5", minimum=5),
    Analyte("AST", "U/L", 24, 9, 0, 0, 40, channel="6", minimum=6),
)


def _mindray_bs(s: Sample, control_id: str) -> bytes:
    # mindray_1_oru (host interface manual): MSH-16 0 = sample result, OBR-2 the bar
    # code, OBR-3 the analyzer's sample no., OBX-3 channel, OBX-4 name, OBX-6
    # padded with spaces, OBX-8 "N" (reserved), OBX-13 the original value.
    p = s.patient.folded()
    ts = stamp(s.when)
    segments = [f"MSH|^~\\&|||||{ts}||ORU^R01|{control_id}|P|2.3.1||||0||ASCII|||",
                f"PID|1|{p.patient_id}|||{p.family_name} {p.given_name}||{p.birth_date}000000|"
                f"{p.sex}|||||||||||||||||||||||",
                f"OBR|1|{s.sample_id}|{s.seq}|^|N|{ts}|{ts}|{ts}||||||{ts}|serum|||||||||||"
                "|||||||||||||||||||||||"]
    for i, m in enumerate(s.results, 1):
        a = m.analyte
        segments.append(f"OBX|{i}|NM|{a.channel}|{a.code}|{m.value}| {a.unit} |"
                        f"{a.range_text()}|N|||F||{m.value}|{ts}||SIM|0|")
    return write_message(segments, "ascii")


def _mindray_qry(barcode: str, when: datetime, control_id: str) -> bytes:
    # mindray_2_qry: QRD-8 the bar code, QRF-6..8 RCT|COR|ALL
    ts = stamp(when)
    return write_message([f"MSH|^~\\&|||||{ts}||QRY^Q02|{control_id}|P|2.3.1||||||ASCII|||",
                          f"QRD|{ts}|R|D|{control_id}|||RD|{barcode}|OTH|||T|",
                          "QRF||||||RCT|COR|ALL||"], "ascii")


MINDRAY_BS = Hl7Style("mindray-bs", "Mindray BS-240", (MINDRAY_BS_PANEL,), _mindray_bs,
                      _mindray_qry)


# ------------------------------------------------------------------ BioSystems BA400

BIOSYSTEMS_PANEL = (
    Analyte("GLUCOSE", "mg/dL", 98, 18, 4, 70, 110),
    Analyte("CREATININE", "mg/dL", 0.95, 0.25, 5, 0.6, 1.3),
    Analyte("CHOLESTEROL", "mg/dL", 190, 35, 4, 0, 200),
    Analyte("TRIGLYCERIDES", "mg/dL", 130, 50, 4, 0, 150),
    Analyte("CHOL HDL DIRECT", "mg/dL", 50, 12, 5, 40, 200),
    Analyte("ALT-GPT", "U/L", 25, 12, 5, 0, 41, minimum=5),
    Analyte("AST-GOT", "U/L", 24, 9, 5, 0, 40, minimum=6),
    Analyte("CRP", "mg/L", 3.0, 4.0, 5, 0, 5, minimum=0.2),
)
_BA_ROUTE = "BA400|Biosystems|Host|Host provider"


def _biosystems(s: Sample, control_id: str) -> bytes:
    # biosystems_1 (LAB-29): no PID, SPM-2 the sample, OBR/ORC/OBX per test with the
    # code system A400, OBX-8 NONE when nothing is flagged, OBX-19 the analysis time.
    ts = stamp(s.when)
    segments = [f"MSH|^~\\&|{_BA_ROUTE}|{ts}||OUL^R22^OUL_R22|{control_id}|P|2.5.1|||ER|AL||"
                "UNICODE UTF-8|||LAB-29^IHE",
                f"SPM|1|{s.sample_id}||SER|||||||P|||||||"]
    for m in s.results:
        a = m.analyte
        flag = "NONE" if m.flag in ("N", "") else m.flag
        segments += [f'OBR||""||{a.code}^{a.code}^A400|||||||||||||||||||||||||',
                     f"ORC|OK||||CM||||{ts}",
                     f"OBX|1|NM|{a.code}^{a.code}^A400||{m.value}|{a.unit}^{a.unit}^A400||"
                     f"{flag}|||F|||||ADMIN||A400^Biosystems~834002355^Biosystems|{ts}"]
    return write_message(segments)


def _biosystems_qbp(barcode: str, when: datetime, control_id: str) -> bytes:
    # biosystems_3 (LAB-27): QPD|WOS^Work Order Step^IHE_LABTF|<tag>|<specimen>
    tag = control_id.replace("-", "")
    return write_message([f"MSH|^~\\&|{_BA_ROUTE}|{stamp(when)}||QBP^Q11^QBP_Q11|{control_id}|P|"
                          "2.5.1|||ER|AL||UNICODE UTF-8|||LAB-27^IHE",
                          f"QPD|WOS^Work Order Step^IHE_LABTF|{tag}|{barcode}",
                          "RCP|I||R"])


BIOSYSTEMS = Hl7Style("biosystems-ba", "BioSystems BA400", (BIOSYSTEMS_PANEL,), _biosystems,
                      _biosystems_qbp, uuid_ids=True)


# ------------------------------------------------------------------ Snibe MAGLUMI

SNIBE_PANEL = (
    Analyte("TSH", "uIU/mL", 1.9, 1.2, 2, 0.3, 4.5, minimum=0.01),
    Analyte("FT4", "ng/dL", 1.25, 0.25, 2, 0.89, 1.76),
    Analyte("T3", "ng/mL", 1.2, 0.3, 2, 0.6, 1.81),
    Analyte("T4", "ug/dL", 8.0, 1.8, 2, 4.5, 12.0),
    Analyte("Ferritin", "ng/mL", 110, 70, 1, 20, 250, minimum=2.0),
)


def _snibe(s: Sample, control_id: str) -> bytes:
    # snibe_1: NE|NE, PID, SPM-2 "<sample>^^", ORC, then OBR/OBX per test with OBX-2
    # empty, OBX-5 "<value>^", OBX-7 "low to high", OBX-19 the result time; NTE last.
    p = s.patient
    ts = stamp(s.when)
    segments = [f"MSH|^~\\&|Maglumi User||Lis||{ts}||OUL^R22|{control_id}|P|2.5|||NE|NE||UTF-8",
                f"PID|1||{p.patient_id}||{p.family_name}^{p.given_name}||{p.birth_date}|{p.sex}",
                f"SPM|1|{s.sample_id}^^||Serum|||||||P||||||||",
                f"ORC|RE||||||N||{ts}|||"]
    for i, m in enumerate(s.results, 1):
        a = m.analyte
        segments += [f"OBR|{i}|||{a.code}^1",
                     f"OBX|1||{a.code}||{m.value}^|{a.unit}|{a.range_text(' to ')}|{m.flag}|||F"
                     f"|||{ts}||||P1^Maglumi|{ts}"]
    segments.append("NTE|1")
    return write_message(segments)


SNIBE = Hl7Style("snibe-maglumi", "Snibe MAGLUMI", (SNIBE_PANEL,), _snibe,
                 suffix=b"\r\n")


# ------------------------------------------------------------------ generic HL7

GENERIC_HL7_PANEL = (
    Analyte("GLU", "mmol/L", 5.4, 1.1, 2, 3.9, 6.1, name="Glucose"),
    Analyte("CREA", "umol/L", 85, 20, 0, 59, 104, name="Creatinine"),
    Analyte("ALT", "U/L", 28, 14, 0, 0, 41, name="ALT", minimum=5),
    Analyte("K", "mmol/L", 4.3, 0.5, 2, 3.5, 5.1, name="Potassium"),
)


def _generic(s: Sample, control_id: str) -> bytes:
    p = s.patient
    ts = stamp(s.when)
    segments = [f"MSH|^~\\&|SIM|LAB|LIS|HOSPITAL|{ts}||ORU^R01^ORU_R01|{control_id}|P|2.5|||"
                "AL|NE||UNICODE UTF-8",
                f"PID|1||{p.patient_id}^^^SIM^MR||{p.family_name}^{p.given_name}||"
                f"{p.birth_date}|{p.sex}",
                f"OBR|1|{s.sample_id}||PANEL^Chemistry^L|||{ts}"]
    segments += [f"OBX|{i}|NM|{m.analyte.code}^{m.analyte.display}^L||{m.value}|"
                 f"{m.analyte.unit}|{m.analyte.range_text()}|{m.flag}|||F|||{ts}"
                 for i, m in enumerate(s.results, 1)]
    return write_message(segments)


GENERIC_HL7 = Hl7Style("generic-hl7", "an HL7 v2.5 chemistry analyzer", (GENERIC_HL7_PANEL,),
                       _generic)

#: Every HL7 style, by driver name.
STYLES: dict[str, Hl7Style] = {s.driver: s for s in (
    MINDRAY_BC, MINDRAY_BS, BIOSYSTEMS, SNIBE, GENERIC_HL7)}


# ------------------------------------------------------------------ answers


def _orr_answer(msg: Hl7Message) -> QueryAnswer:
    """An ORR^O02 carries the answer whole: AA with the run's Test Mode, or AR."""
    msa = msg.first("MSA")
    code = msg.delimiters.text(msa[1]).strip().upper() if msa is not None else ""
    if code == "AR":
        return QueryAnswer(False, (), "no order (MSA AR)")
    if code != "AA":
        return QueryAnswer(None, (), f"query refused (MSA {code or 'missing'})")
    d = msg.delimiters
    modes = [d.text(obx[5]).strip() for obx in msg.named("OBX")
             if d.component_at(obx[3], 2).strip() == "Test Mode"]
    mode = modes[0] if modes else ""
    return QueryAnswer(True, (mode,) if mode else (), f"test mode: {mode or '?'}")


def query_answer(msg: Hl7Message) -> QueryAnswer | None:
    """The gateway's immediate answer to a query (QCK^Q02, RSP^K11 from QAK-2; ORR^O02).

    Returns:
        ``found=True`` for ``OK`` (the orders follow in DSR^Q03 / OML^O33) or an
        ORR^O02 AA (its Test Mode as the one "test"), ``False`` for ``NF`` or AR,
        ``None`` for an error; None when ``msg`` is no such answer.
    """
    kind = msg.message_type.split("^")[0]
    if kind == "ORR":
        return _orr_answer(msg)
    if kind not in ("QCK", "RSP"):
        return None
    qak = msg.first("QAK")
    status = msg.delimiters.text(qak[2]).strip().upper() if qak is not None else ""
    if status == "OK":
        return QueryAnswer(True, (), "orders follow")
    if status == "NF":
        return QueryAnswer(False, (), "no order (QAK NF)")
    return QueryAnswer(None, (), f"query refused (QAK {status or 'missing'})")


def ordered_tests(msg: Hl7Message) -> tuple[str, ...] | None:
    """The tests of an order download (DSR^Q03 DSP-29 on, OML^O33 OBR-4); None otherwise."""
    d = msg.delimiters
    kind = msg.message_type.split("^")[0]
    if kind == "DSR":
        tests = []
        for dsp in msg.named("DSP"):
            number = dsp[1].strip()
            if number.isdigit() and int(number) >= 29:
                code = d.component_at(dsp[3], 1).strip()
                if code:
                    tests.append(code)
        return tuple(tests)
    if kind == "OML":
        return tuple(d.component_at(obr[4], 1).strip() for obr in msg.named("OBR")
                     if d.component_at(obr[4], 1).strip())
    return None


def reply_to(msg: Hl7Message, control_id: str, when: datetime) -> bytes | None:
    """What the analyzer answers to a message from the gateway (None: nothing).

    DSR^Q03 gets ACK^Q03 (Mindray host interface), OML^O33 gets ORL^O34 (LAB-28).
    """
    kind = msg.message_type.split("^")[0]
    ts = stamp(when)
    if kind == "DSR":
        return write_message([f"MSH|^~\\&|||||{ts}||ACK^Q03|{control_id}|P|2.3.1||||||ASCII|||",
                              f"MSA|AA|{msg.control_id}|Message accepted|||0|", "ERR|0|"],
                             "ascii")
    if kind == "OML":
        return write_message([f"MSH|^~\\&|{_BA_ROUTE}|{ts}||ORL^O34^ORL_O34|{control_id}|P|2.5.1"
                              "|||NE|NE||UNICODE UTF-8|||LAB-28^IHE",
                              f"MSA|AA|{msg.control_id}"])
    return None
