"""HL7 v2 parse and acknowledgement: our small parser against python-hl7 and hl7apy.

Run from the repository root with the project's interpreter::

    .venv/bin/python bench/hl7_bench.py            # about 30 s
    .venv/bin/python bench/hl7_bench.py --reps 3   # quicker, noisier

Workload: one made-up ORU^R01 v2.5.1 with PID, PV1, ORC, OBR and 20 OBX, the
shape the steering measurements used. Before timing, the run checks that the
three parsers read the same values (message type, control ID, every OBX-3.1,
OBX-5, OBX-6.1 and OBX-8), and stops on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage
from hl7apy.parser import parse_message as hl7apy_parse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from decimal import Decimal  # noqa: E402

from timing import measure  # noqa: E402

from lis_gateway.hl7.ack import Outcome, build_ack, plan_acks  # noqa: E402
from lis_gateway.hl7.datatypes import (  # noqa: E402
    EntityIdentifier,
    HierarchicDesignator,
    MessageRoute,
    ObservationCode,
    Person,
)
from lis_gateway.hl7.message import parse_message  # noqa: E402
from lis_gateway.hl7.oru import (  # noqa: E402
    NumericValue,
    Observation,
    ObservationStatus,
    Order,
    ReportStatus,
    build_oru_r01,
)
from lis_gateway.hl7.patient import PatientIdentity, Sex  # noqa: E402

ORU_INPUTS: tuple[Any, ...] = ()
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=7)))
TESTS = [("2345-7", "GLU", "5.5", "mmol/L", "3.9-6.1", "N"),
         ("2160-0", "CREA", "88", "umol/L", "59-104", "N"),
         ("1742-6", "ALT", "53", "U/L", "0-41", "H"),
         ("2951-2", "NA", "141", "mmol/L", "136-145", "N"),
         ("2823-3", "K", "5.7", "mmol/L", "3.5-5.1", "H")]


def build_workload() -> bytes:
    """The ORU^R01 with 20 OBX, segments ending in CR."""
    segs = ["MSH|^~\\&|LIS-GATEWAY|LAB|HIS|HOSP|20261122093000+0700||ORU^R01^ORU_R01|"
            "GW-000001|P|2.5.1|||AL|NE||UNICODE UTF-8",
            "PID|1||12345678^^^HOSP^PI~001099012345^^^VNM^NI||NGUYEN^VAN A||19800101|M",
            "PV1|1|I|NOI1^101^1",
            "ORC|RE|HIS-1|S240001",
            "OBR|1|HIS-1|S240001|24331-1^Lipid panel^LN|||20261122080000|||||||"
            "20261122081000||||||||20261122092000|||F"]
    for i in range(20):
        loinc, code, value, unit, rng, flag = TESTS[i % len(TESTS)]
        segs.append(f"OBX|{i + 1}|NM|{loinc}^{code}^LN^{code}{i}^{code}^99LOCAL||{value}|"
                    f"{unit}^{unit}^UCUM|{rng}|{flag}|||F|||20261122091500||TECH^Tran^Thi|"
                    f"|ANALYZER-1")
    return ("\r".join(segs) + "\r").encode()


def oru_inputs() -> tuple[MessageRoute, PatientIdentity, tuple[Order, ...]]:
    """The same report as the workload, as builder input (20 observations)."""
    hosp = HierarchicDesignator("HOSP")
    route = MessageRoute(HierarchicDesignator("LIS-GATEWAY"), HierarchicDesignator("LAB"),
                         HierarchicDesignator("HIS"), hosp)
    patient = PatientIdentity(hospital_id="12345678", hospital=hosp, national_id="001099012345",
                              family_name="Nguyễn", given_name="Văn A", sex=Sex.MALE)
    tech = Person("TECH", "Trần", "Thị", hosp)
    observations = tuple(
        Observation(ObservationCode(loinc, code, f"{code}{i}", code),
                    NumericValue(Decimal(value)), ObservationStatus.FINAL, unit=unit,
                    reference_range=rng,
                    abnormal_flags=(flag,), validated_by=tech,
                    equipment=(EntityIdentifier("ANALYZER-1", "LAB"),), analyzed_at=NOW)
        for i, (loinc, code, value, unit, rng, flag) in
        ((i, TESTS[i % len(TESTS)]) for i in range(20)))
    order = Order(EntityIdentifier("S240001", "LAB"),
                  ObservationCode("24331-1", "Lipid panel", "LIPID", "Lipid"),
                  ReportStatus.FINAL, observations,
                  placer_order_number=EntityIdentifier("HIS-1", "HIS"),
                  collected_at=NOW, received_at=NOW)
    return route, patient, (order,)


def ours(raw: bytes) -> list[tuple[str, ...]]:
    msg = parse_message(raw)
    d = msg.delimiters
    return [(msg.message_type, msg.control_id)] + [
        (d.component_at(o[3], 1), o[5], d.component_at(o[6], 1), o[8]) for o in msg.named("OBX")]


def python_hl7(raw: bytes) -> list[tuple[str, ...]]:
    msg = hl7.parse(raw.decode())
    msh = msg.segment("MSH")
    out: list[tuple[str, ...]] = [(f"{msh[9][0][0]}^{msh[9][0][1]}", str(msh[10]))]
    for o in msg.segments("OBX"):
        out.append((str(o[3][0][0]), str(o[5]), str(o[6][0][0]), str(o[8])))
    return out


def hl7apy_values(raw: bytes, level: int) -> list[tuple[str, ...]]:
    msg = hl7apy_parse(raw.decode(), validation_level=level, find_groups=True)
    out: list[tuple[str, ...]] = [
        (f"{msg.msh.msh_9.msh_9_1.value}^{msg.msh.msh_9.msh_9_2.value}", msg.msh.msh_10.value)]
    obxs = msg.children.get("ORU_R01_PATIENT_RESULT").children.get(
        "ORU_R01_ORDER_OBSERVATION").children.get("ORU_R01_OBSERVATION")
    for group in obxs:
        o = group.obx
        out.append((o.obx_3.obx_3_1.value, o.obx_5.value, o.obx_6.obx_6_1.value, o.obx_8.value))
    return out


def hl7apy_build(segments: list[str]) -> str:
    """The workload built with hl7apy's object API (groups, segments, field by field).

    Every non-empty field is assigned its ER7 text (repetitions added one by
    one), so hl7apy splits it into components itself; ``to_er7()`` gives the
    workload's bytes back (checked before timing). python-hl7 has no such API
    (it builds only ACKs, ``create_ack``, timed below).
    """
    m = Hl7apyMessage("ORU_R01", version="2.5.1", validation_level=VALIDATION_LEVEL.QUIET)

    def fill(seg: Any, text: str) -> None:
        fields = text.split("|")
        is_msh = seg.name == "MSH"
        for i, value in enumerate(fields[2:] if is_msh else fields[1:], start=3 if is_msh else 1):
            name = f"{seg.name.lower()}_{i}"
            if value and is_msh:
                setattr(seg, name, value)
            elif value:
                for rep in value.split("~"):
                    seg.add_field(name).value = rep

    fill(m.msh, segments[0])
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    fill(patient.add_segment("PID"), segments[1])
    fill(patient.add_group("ORU_R01_VISIT").add_segment("PV1"), segments[2])
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    fill(order.add_segment("ORC"), segments[3])
    fill(order.add_segment("OBR"), segments[4])
    for obx in segments[5:]:
        fill(order.add_group("ORU_R01_OBSERVATION").add_segment("OBX"), obx)
    er7: str = m.to_er7()
    return er7


def main() -> int:
    """Check that all parsers agree, time them, print a table, write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--target", type=float, default=0.3)
    args = parser.parse_args()
    raw = build_workload()
    expected = ours(raw)
    for name, got in (("python-hl7", python_hl7(raw)),
                      ("hl7apy", hl7apy_values(raw, VALIDATION_LEVEL.QUIET))):
        if got != expected:
            print(f"MISMATCH: {name} reads different values", file=sys.stderr)
            return 1
    msg = parse_message(raw)
    print(f"workload: ORU^R01 v2.5.1, {len(msg.segments)} segments, 20 OBX, {len(raw)} bytes")
    print("checks passed: ours, python-hl7 and hl7apy read the same type, control ID and "
          "OBX-3.1/5/6.1/8")
    global ORU_INPUTS
    ORU_INPUTS = oru_inputs()
    built = parse_message(build_oru_r01(*ORU_INPUTS, control_id="GW-1", now=NOW))
    if [v[1:] for v in ours(built.raw)[1:]] != [v[1:] for v in expected[1:]]:
        print("MISMATCH: the built ORU does not carry the workload's OBX values", file=sys.stderr)
        return 1
    segments = raw.decode().split("\r")[:-1]
    if hl7apy_build(segments) + "\r" != raw.decode():
        print("MISMATCH: hl7apy's build differs from the workload", file=sys.stderr)
        return 1
    print("checks passed: hl7apy's object-API build gives the workload's bytes back")
    cases = {
        "ours: parse_message + read the OBX values": lambda: ours(raw),
        "python-hl7: hl7.parse + read the OBX values": lambda: python_hl7(raw),
        "hl7apy: parse (QUIET) + read the OBX values":
            lambda: hl7apy_values(raw, VALIDATION_LEVEL.QUIET),
        "hl7apy: parse (STRICT) + validate()":
            lambda: hl7apy_parse(raw.decode(), validation_level=VALIDATION_LEVEL.STRICT,
                                 find_groups=True).validate(),
        "ours: build_oru_r01 (20 OBX, escaped, UTF-8)":
            lambda: build_oru_r01(*ORU_INPUTS, control_id="GW-1", now=NOW),
        "hl7apy: build the ORU (object API, QUIET) + to_er7()": lambda: hl7apy_build(segments),
        "ours: plan_acks + build_ack (AA)":
            lambda: build_ack(msg, plan_acks(msg, Outcome.ACCEPTED)[0], control_id="A1",
                              now=NOW),
        "python-hl7: parse + create_ack (AA)":
            lambda: str(hl7.parse(raw.decode()).create_ack("AA", message_id="A1")),
    }
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    print(f"\n{args.reps} repetitions after a warm-up; time per message\n")
    print(f"{'case':55} {'median':>12} {'min-max':>22} {'msg/s':>10}")
    for name, fn in cases.items():
        target = args.target if "hl7apy" not in name else max(args.target, 1.0)
        r = measure(fn, reps=args.reps, target=target)
        results[name] = r
        print(f"{name:55} {fmt(r['median']):>12} {fmt(r['min']) + '-' + fmt(r['max']):>22} "
              f"{1 / r['median']:>10,.0f}")
    out = ROOT / "bench" / "results" / "hl7.json"
    out.parent.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    out.write_text(json.dumps({"commit": commit, "python": platform.python_version(),
                               "machine": platform.machine(),
                               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                               "peers": {"hl7": version("hl7"), "hl7apy": version("hl7apy")},
                               "results": results}, indent=1))
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


def fmt(seconds: float) -> str:
    """Microseconds or milliseconds, three significant figures."""
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
