"""What the system benchmarks send and how the gateway is set up to judge it.

Every message is the same shape as the codec benchmark's (``bench/run.py``):
H, P, O (ordering all tests, longer than one frame when 20 are ordered),
the results, L; one record per E1381 frame, at most 240 text characters per
frame, so a 20-result message is 25 frames. Each message has its own sample
ID (a repeat would be recognised by the store and add nothing) and its own
made-up patient. Values, units and ranges come from ``run.PANEL``.

The mapping table and the rules file are written for these 20 codes: every
code is mapped (UCUM unit, autoverification limits wide enough for the
panel's values, no critical limits), and the rules are the kinds a lab uses
(always-hold, critical, instrument flags, limits from the table, a delta
check), so every result is evaluated by every rule and autoverified.
"""

from __future__ import annotations

from dataclasses import dataclass

from run import PANEL, build_frames

from lis_gateway.astm.codec import encode_message
from lis_gateway.astm.records import (
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
)

ENQ, ACK, NAK, EOT = b"\x05", b"\x06", b"\x15", b"\x04"
ENCODING = "latin-1"


@dataclass(frozen=True)
class Message:
    """One analyzer upload: its sample ID, its E1381 frames and its result count."""

    sample: str
    frames: tuple[bytes, ...]
    results: int

    @property
    def wire_bytes(self) -> int:
        """Bytes on the line for one transfer: ENQ, the frames, EOT."""
        return 2 + sum(len(f) for f in self.frames)


def records(sample: str, patient: int, results: int = 20) -> list[Record]:
    """H, P, O, ``results`` R records (the panel's first ones), L."""
    panel = PANEL[:results]
    out: list[Record] = [
        HeaderRecord(sender_id="LabSim^1.0^SN00017", receiver_id="LIS", processing_id="P",
                     version="LIS2-A2", timestamp="20250114093512"),
        PatientRecord(sequence="1", laboratory_patient_id=f"BP{patient:07d}",
                      name=f"BENCH^PATIENT^{patient}", birthdate="19700312", sex="M"),
        OrderRecord(sequence="1", specimen_id=sample, instrument_specimen_id="R04^12",
                    universal_test_id="\\".join(f"^^^{t[0]}" for t in panel), priority="R",
                    requested_at="20250114080000", collected_at="20250114081500",
                    action_code="N", received_at="20250114084000",
                    specimen_descriptor="SERUM", ordering_physician="TRAN^THI^BINH",
                    reported_at="20250114093512", report_type="F"),
    ]
    for i, (code, value, unit, ref, flag) in enumerate(panel, start=1):
        out.append(ResultRecord(
            sequence=str(i), universal_test_id=f"^^^{code}", value=value, units=unit,
            reference_range=ref, abnormal_flags=flag, status="F", operator_id="OPER1^SUPV1",
            started_at=f"202501140930{i:02d}", completed_at=f"202501140935{i:02d}",
            instrument_id="C311-1"))
    out.append(TerminatorRecord(sequence="1", termination_code="N"))
    return out


def message(sample: str, patient: int, results: int = 20) -> Message:
    """The frames of one upload (frame numbers from 1, ETB inside long records)."""
    text = encode_message(records(sample, patient, results))
    return Message(sample, tuple(build_frames(text)), results)


def sample_id(run: str, link: int, seq: int) -> str:
    """A sample ID unique per run, link and sequence number (e.g. ``A07L012S00031``)."""
    return f"{run}L{link:03d}S{seq:05d}"


#: UCUM spelling of the panel's units (all are valid UCUM already).
_UCUM = {"mmol/L": "mmol/L", "umol/L": "umol/L", "U/L": "U/L", "g/L": "g/L"}


def mapping_csv() -> str:
    """A ``generic-astm.csv`` mapping every panel code (autoverify limits 0..10000)."""
    header = ("analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
              "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
              "autoverify_low,autoverify_high")
    lines = [header]
    for code, _value, unit, _ref, _flag in PANEL:
        lines.append(f"{code},{code},,,,Xét nghiệm {code},Test {code},{unit},{_UCUM[unit]},"
                     "1,0,,,,0,10000")
    return "\n".join(lines) + "\n"


RULES_TOML = """\
# Written by bench/system.py: every kind a lab uses; the panel's values pass them all.
version = "bench-1"

[[rules]]
id = "problems"
kind = "always-hold"

[[rules]]
id = "critical"
kind = "critical"

[[rules]]
id = "flags"
kind = "instrument-flags"

[[rules]]
id = "limits"
kind = "limits"                # the table's autoverify_low/high

[[rules]]
id = "delta"
kind = "delta"
percent = 50
window_hours = 72
"""
