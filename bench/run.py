"""First benchmark of lis-gateway: our ASTM code against python-astm 0.5.0.

Run from the repository root with the project's interpreter::

    .venv/bin/python bench/run.py          # or: make bench

Our code is timed in this interpreter (the project's ``.venv``). python-astm
is never installed there: on first run this script creates
``bench/.venv-peers``, installs ``astm==0.5.0`` into it with the
``collections.Iterable`` shim (see ``bench/pyastm_shim.py``), and times it
in that interpreter as a subprocess (``bench/pyastm_peer.py``).

Workload: one synthetic chemistry upload H/P/O/20xR/L built with our encoder
(made-up data, about 2 kB; the O record spans two 240-character frames).

1. ``decode``  E1394 text -> records.
2. ``receive`` raw E1381 bytes (ENQ, one frame per read, EOT) -> 20 result rows.
3. ``encode``  records -> E1381 frames.
4. ``link``    an instrument LinkConnection sending to a computer LinkConnection.

Before anything is timed, every implementation's output is compared (same
decoded fields, same 20 result rows, same ACK replies, byte-identical
frames); a mismatch stops the run. Timing: ``time.perf_counter``, one warm-up
repetition, 7 timed repetitions (``bench/timing.py``); the table shows the
median and the min-max of the 7. Results go to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any, cast

import timing

from drivers import generic_astm
from drivers.extract import ResultRow, extract_results
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission, MessageAssembler
from lis_gateway.astm.codec import Decoded, decode_records, encode_message
from lis_gateway.astm.constants import ENQ, EOT
from lis_gateway.astm.events import Event, FrameAccepted, MessageSent, TransferEnded
from lis_gateway.astm.frames import (
    ChecksumMode,
    check_frame,
    encode_frame,
    restricted_characters,
    split_text,
)
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role
from lis_gateway.astm.records import (
    FIELD_NAMES,
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
    UnknownRecord,
)
from lis_gateway.capture import decode_capture

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEER_VENV = BENCH / ".venv-peers"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_STAMP = PEER_VENV / ".astm-0.5.0-installed"
ASTM_REQUIREMENT = "astm==0.5.0"
RESULTS = BENCH / "results" / "latest.json"

SPEC = generic_astm.SPEC
ENCODING = SPEC.encoding
MAX_TEXT = 240  # E1381 text per frame
FRAME_SIZE = MAX_TEXT + 7  # python-astm's `size`: text + STX FN ETX/ETB C1 C2 CR LF

# ------------------------------------------------------------------ workload

# (code, value, unit, reference range, flag): made-up chemistry panel.
PANEL = [
    ("GLU", "5.4", "mmol/L", "3.9-6.1", "N"), ("CREA", "88", "umol/L", "62-106", "N"),
    ("UREA", "8.2", "mmol/L", "2.5-7.1", "H"), ("UA", "365", "umol/L", "208-428", "N"),
    ("CHOL", "5.9", "mmol/L", "0.0-5.2", "H"), ("TRIG", "1.2", "mmol/L", "0.0-1.7", "N"),
    ("HDL", "0.98", "mmol/L", "1.04-1.55", "L"), ("LDL", "3.8", "mmol/L", "0.0-3.4", "H"),
    ("AST", "28", "U/L", "0-40", "N"), ("ALT", "35", "U/L", "0-41", "N"),
    ("GGT", "72", "U/L", "8-61", "H"), ("ALP", "96", "U/L", "40-129", "N"),
    ("TBIL", "14.2", "umol/L", "0-21", "N"), ("DBIL", "3.1", "umol/L", "0-5", "N"),
    ("TP", "71", "g/L", "64-83", "N"), ("ALB", "44", "g/L", "35-52", "N"),
    ("CA", "2.31", "mmol/L", "2.15-2.55", "N"), ("NA", "139", "mmol/L", "136-145", "N"),
    ("K", "4.2", "mmol/L", "3.5-5.1", "N"), ("CL", "101", "mmol/L", "98-107", "N"),
]


def build_records() -> list[Record]:
    """H, P, O (ordering all 20 tests, so it is longer than one frame), 20 R, L."""
    records: list[Record] = [
        HeaderRecord(sender_id="LabSim^1.0^SN00017", receiver_id="LIS", processing_id="P",
                     version="LIS2-A2", timestamp="20250114093512"),
        PatientRecord(sequence="1", laboratory_patient_id="PID0041277",
                      name="NGUYEN^VAN^AN", birthdate="19700312", sex="M"),
        OrderRecord(sequence="1", specimen_id="S2501140042", instrument_specimen_id="R04^12",
                    universal_test_id="\\".join(f"^^^{t[0]}" for t in PANEL), priority="R",
                    requested_at="20250114080000", collected_at="20250114081500",
                    action_code="N", received_at="20250114084000",
                    specimen_descriptor="SERUM", ordering_physician="TRAN^THI^BINH",
                    reported_at="20250114093512", report_type="F"),
    ]
    for i, (code, value, unit, ref, flag) in enumerate(PANEL, start=1):
        records.append(ResultRecord(
            sequence=str(i), universal_test_id=f"^^^{code}", value=value, units=unit,
            reference_range=ref, abnormal_flags=flag, status="F", operator_id="OPER1^SUPV1",
            started_at=f"202501140930{i:02d}", completed_at=f"202501140935{i:02d}",
            instrument_id="C311-1"))
    records.append(TerminatorRecord(sequence="1", termination_code="N"))
    return records


def build_frames(text: bytes) -> list[bytes]:
    """E1381 frames as our sender writes them: per record, 240 text chars, FN from 1."""
    parts = split_text(text, max_text=MAX_TEXT, per_record=True)
    return [encode_frame((i + 1) % 8, t, final=final) for i, (t, final) in enumerate(parts)]


@dataclass(frozen=True)
class Workload:
    records: list[Record]
    text: bytes  # E1394 message text, records ending in CR
    frames: list[bytes]
    chunks: list[bytes]  # what the instrument writes: ENQ, each frame, EOT
    raw: bytes  # the chunks joined (a capture)
    packed: bytes  # the whole text in one frame (python-astm decode_message input)

    @property
    def n_records(self) -> int:
        return len(self.records)

    @property
    def n_results(self) -> int:
        return sum(isinstance(r, ResultRecord) for r in self.records)


def build_workload() -> Workload:
    records = build_records()
    text = encode_message(records)
    frames = build_frames(text)
    chunks = [ENQ, *frames, EOT]
    order_len = len(text.split(b"\r")[2])
    # the O record must straddle two frames, and not on a 240 boundary (python-astm's
    # splitter and ours then cut it identically)
    assert MAX_TEXT < order_len < 2 * MAX_TEXT and order_len % MAX_TEXT, order_len
    return Workload(records, text, frames, chunks, b"".join(chunks),
                    encode_frame(1, text, final=True))


# ------------------------------------------------------------------ our side

def flat_fields(rec: Record) -> list[str]:
    """A decoded record as its raw field texts, type letter first (E1394 numbering)."""
    if isinstance(rec, UnknownRecord):
        return [rec.record_type, *rec.extra]
    values = [rec.TYPE, *(getattr(rec, n) for n in FIELD_NAMES[type(rec)]), *rec.extra]
    return values[:rec.field_count]


def nested(rec: Record, repeat: str = "\\", component: str = "^") -> list[Any]:
    """python-astm's output shape: every field split into repeats and components."""
    out: list[Any] = []
    for raw in flat_fields(rec):
        if not raw:
            out.append(None)
        elif repeat in raw:
            out.append([[c or None for c in rep.split(component)] for rep in raw.split(repeat)])
        elif component in raw:
            out.append([c or None for c in raw.split(component)])
        else:
            out.append(raw)
    return out


def row_values(row: ResultRow) -> list[Any]:
    """The 9 values compared with python-astm (record_index is ours only)."""
    return [row.sample_id, row.test, row.value, row.unit, row.reference_range,
            list(row.flags), row.status, row.completed_at, row.instrument]


class Receiver:
    """Gateway receive path: LinkConnection (computer) + MessageAssembler + extract_results.

    Routed the way ``lis_gateway.capture`` routes events; one instance is one
    connection, reused for every transmission.
    """

    def __init__(self) -> None:
        self.link = LinkConnection(SPEC.link_config())
        self.assembler = MessageAssembler(ENCODING)
        self.messages: list[AstmMessage] = []
        self.log: list[Event] | None = None

    def run(self, chunks: Sequence[bytes]) -> tuple[list[ResultRow], bytes]:
        link, assembler = self.link, self.assembler
        rows: list[ResultRow] = []
        replies = bytearray()
        for chunk in chunks:  # one read per chunk
            link.receive_data(chunk, 0.0)
            replies += link.data_to_send()
            events = link.events()
            if self.log is not None:
                self.log += events
            for event in events:
                if isinstance(event, FrameAccepted):
                    items = assembler.add_text(event.text, block_end=event.final,
                                               offset=event.offset)
                elif isinstance(event, TransferEnded):
                    items = assembler.end_transfer()
                else:
                    continue
                for item in items:
                    if isinstance(item, AstmMessage):
                        if self.log is not None:
                            self.messages.append(item)
                        rows += extract_results(item, SPEC)
        return rows, bytes(replies)


def receiver_message(w: Workload) -> AstmMessage:
    rx = Receiver()
    rx.log = []
    rx.run(w.chunks)
    return rx.messages[0]


class Pair:
    """An instrument-role core sending to a computer-role core through memory."""

    def __init__(self) -> None:
        self.instrument = LinkConnection(LinkConfig(role=Role.INSTRUMENT))
        self.computer = LinkConnection(SPEC.link_config())
        self.wire: list[bytes] | None = None

    def run(self, message: bytes) -> tuple[list[Event], list[Event]]:
        inst, comp = self.instrument, self.computer
        inst.send(message, 0.0)
        while True:
            a = inst.data_to_send()
            if a:
                if self.wire is not None:
                    self.wire.append(a)
                comp.receive_data(a, 0.0)
            b = comp.data_to_send()
            if b:
                inst.receive_data(b, 0.0)
            if not a and not b:
                return inst.events(), comp.events()


def frame_texts(w: Workload) -> list[tuple[bytes, bool]]:
    """(text, ends with ETX) of each workload frame, as FrameAccepted carries them."""
    return [(f[2:-5], f[-5] == 0x03) for f in w.frames]


def our_cases(w: Workload) -> dict[str, Callable[[], object]]:
    text, packed, records = w.text, w.packed, w.records
    receiver, pair = Receiver(), Pair()
    link_only = LinkConnection(SPEC.link_config())
    assembler = MessageAssembler(ENCODING)
    texts = frame_texts(w)
    message = receiver_message(w)

    def decode() -> Any:
        return decode_records([line for line in text.decode(ENCODING).split("\r") if line])

    def decode_packed() -> Any:
        checked = check_frame(packed[:-2], ChecksumMode.STRICT)
        if not checked.checksum_ok:
            raise ValueError("checksum")
        return decode_records([ln for ln in checked.text.decode(ENCODING).split("\r") if ln])

    def decode_nested() -> list[list[Any]]:
        return [nested(r) for r in decode().records]

    def encode() -> list[bytes]:
        return build_frames(encode_message(records))

    def link_alone() -> bytes:
        replies = bytearray()
        for chunk in w.chunks:
            link_only.receive_data(chunk, 0.0)
            replies += link_only.data_to_send()
            link_only.events()
        return bytes(replies)

    def assemble() -> list[AstmMessage | IncompleteTransmission]:
        out: list[AstmMessage | IncompleteTransmission] = []
        for t, final in texts:
            out += assembler.add_text(t, block_end=final)
        return out + assembler.end_transfer()

    return {
        "decode.ours.decode_records": decode,
        "decode.ours.check_frame": decode_packed,
        "decode.ours.nested": decode_nested,
        "receive.ours.link": lambda: receiver.run(w.chunks),
        "receive.ours.decode_capture": lambda: decode_capture(w.raw, SPEC),
        "parts.ours.link": link_alone,
        "parts.ours.restricted": lambda: [restricted_characters(t) for t, _ in texts],
        "parts.ours.assembler": assemble,
        "parts.ours.extract": lambda: extract_results(message, SPEC),
        "encode.ours.encode": encode,
        "link.ours.pair": lambda: pair.run(text),
    }


# Table layout: name -> (group, label, unit counted per message, reference row for 'x ref').
CASES: dict[str, tuple[str, str, str, str]] = {
    "decode.ours.decode_records": (
        "1 decode", "ours: decode_records (text -> 24 typed records)", "records",
        "decode.ours.decode_records"),
    "decode.ours.check_frame": (
        "1 decode", "ours: check_frame + decode_records (packed frame)", "records",
        "decode.ours.decode_records"),
    "decode.ours.nested": (
        "1 decode", "ours: decode_records + split all fields (astm shape)", "records",
        "decode.ours.decode_records"),
    "decode.pyastm.decode_record": (
        "1 decode", "python-astm: decode_record x 24", "records",
        "decode.ours.decode_records"),
    "decode.pyastm.decode_message": (
        "1 decode", "python-astm: decode_message (packed frame)", "records",
        "decode.ours.decode_records"),
    "receive.ours.link": (
        "2 receive", "ours: LinkConnection + MessageAssembler + extract", "results",
        "receive.ours.link"),
    "receive.ours.decode_capture": (
        "2 receive", "ours: decode_capture (whole capture, new link)", "results",
        "receive.ours.link"),
    "receive.pyastm.codec": (
        "2 receive", "python-astm: codec chunk/join/decode_message + extract", "results",
        "receive.ours.link"),
    "receive.pyastm.request_handler": (
        "2 receive", "python-astm: server.RequestHandler (no socket) + extract", "results",
        "receive.ours.link"),
    "parts.ours.link": (
        "2b parts", "  of which LinkConnection alone (scan, check, ACK)", "frames",
        "receive.ours.link"),
    "parts.ours.restricted": (
        "2b parts", "    of which restricted_characters() on 25 frames", "frames",
        "receive.ours.link"),
    "parts.ours.assembler": (
        "2b parts", "  of which MessageAssembler (incl. decode_records)", "records",
        "receive.ours.link"),
    "parts.ours.extract": (
        "2b parts", "  of which extract_results (generic-astm hooks)", "results",
        "receive.ours.link"),
    "encode.ours.encode": (
        "3 encode", "ours: encode_message + split_text + encode_frame", "frames",
        "encode.ours.encode"),
    "encode.pyastm.iter_encode": (
        "3 encode", "python-astm: iter_encode(size=247)", "frames",
        "encode.ours.encode"),
    "link.ours.pair": (
        "4 link", "ours: instrument -> computer LinkConnection pair", "frames",
        "link.ours.pair"),
}


# -------------------------------------------------------------------- checks

class CheckFailed(Exception):
    pass


def expect(ok: bool, what: str, got: object = None, want: object = None) -> None:
    if not ok:
        detail = f"\n  got:  {got!r}\n  want: {want!r}" if got is not None else ""
        raise CheckFailed(f"{what}{detail}")


def check_ours(w: Workload, cases: dict[str, Callable[[], object]]) -> dict[str, Any]:
    """Every one of our cases gives the right output; returns what peers must match."""
    expected_flat = []
    for rec in w.records:  # the built records' fields, trailing empty ones dropped
        assert not isinstance(rec, UnknownRecord)
        values = [rec.TYPE, *(getattr(rec, n) for n in FIELD_NAMES[type(rec)])]
        while values[-1] == "":
            values.pop()
        expected_flat.append(values)
    expected_flat[0][1] = "\\^&"  # H-2 is written from the delimiters
    for name in ("decode.ours.decode_records", "decode.ours.check_frame"):
        decoded = cast(Decoded, cases[name]())
        expect([flat_fields(r) for r in decoded.records] == expected_flat,
               f"{name}: fields differ from what was encoded")
        expect(decoded.problems == (), f"{name}: problems", decoded.problems)

    rx = Receiver()
    rx.log = []
    rows, replies = rx.run(w.chunks)
    rows2, replies2 = rx.run(w.chunks)  # a second transmission on the same link
    values = [row_values(r) for r in rows]
    expect(len(rows) == w.n_results, "receive.ours.link: result count", len(rows), w.n_results)
    expect(values == [row_values(r) for r in rows2] and replies == replies2,
           "receive.ours.link: second transmission differs")
    kinds = sorted({type(e).__name__ for e in rx.log})
    expect(kinds == ["FrameAccepted", "TransferEnded", "TransferStarted"],
           "receive.ours.link: unexpected link events", kinds)
    expect(all(m.problems == () and m.terminated for m in rx.messages),
           "receive.ours.link: message problems", [m.problems for m in rx.messages])
    expect(replies == b"\x06" * (len(w.frames) + 1), "receive.ours.link: replies", replies)
    want_values = [next(r.specimen_id for r in w.records if isinstance(r, OrderRecord)),
                   PANEL[0][0], PANEL[0][1], PANEL[0][2], PANEL[0][3], [PANEL[0][4]], "F",
                   "20250114093501", "C311-1"]
    expect(values[0] == want_values, "receive.ours.link: first row", values[0], want_values)

    expect(cases["parts.ours.link"]() == replies, "parts.ours.link: replies")
    assembled = cast(list[AstmMessage], cases["parts.ours.assembler"]())
    expect(len(assembled) == 1 and isinstance(assembled[0], AstmMessage)
           and [row_values(r) for r in extract_results(assembled[0], SPEC)] == values,
           "parts.ours.assembler: message differs")
    extracted = cast(list[ResultRow], cases["parts.ours.extract"]())
    expect([row_values(r) for r in extracted] == values,
           "parts.ours.extract: rows differ")

    report = decode_capture(w.raw, SPEC)
    expect([row_values(r) for _, r in report.rows] == values and not report.problems,
           "receive.ours.decode_capture differs", report.problems)

    frames = cases["encode.ours.encode"]()
    expect(frames == w.frames, "encode.ours.encode: frames differ")

    pair = Pair()
    pair.wire = []
    inst_events, comp_events = pair.run(w.text)
    accepted = [e for e in comp_events if isinstance(e, FrameAccepted)]
    expect(len(accepted) == len(w.frames), "link.ours.pair: frames accepted", len(accepted))
    expect(b"".join(e.text for e in accepted) == w.text, "link.ours.pair: text differs")
    expect(any(isinstance(e, MessageSent) for e in inst_events), "link.ours.pair: not sent")
    expect(pair.wire == w.chunks, "link.ours.pair: wire bytes differ from the workload chunks")
    return {
        "fields": expected_flat,
        "nested": cases["decode.ours.nested"](),
        "rows": values,
        "replies": replies,
        "frames": w.frames,
    }


def check_peer(expected: dict[str, Any], peer: dict[str, Any], w: Workload) -> dict[str, Any]:
    """python-astm produced the same work; returns notes for the report."""
    for name in ("decode.pyastm.decode_record", "decode.pyastm.decode_message"):
        expect(peer[name]["flat"] == expected["fields"], f"{name}: fields differ",
               peer[name]["flat"], expected["fields"])
    expect(peer["decode.pyastm.decode_record"]["nested"] == expected["nested"],
           "decode.ours.nested: not python-astm's output shape")
    notes: dict[str, Any] = {}
    for name in ("receive.pyastm.codec", "receive.pyastm.request_handler"):
        got = peer[name]
        expect(got["rows"] == expected["rows"], f"{name}: result rows differ",
               got["rows"], expected["rows"])
        expect(got["replies"] == expected["replies"].decode(ENCODING), f"{name}: replies",
               got["replies"])
        notes[name] = {"records_dispatched": len(got["record_types"]),
                       "record_types": "".join(t if len(t) == 1 else "?"
                                               for t in got["record_types"])}
    codec_types = notes["receive.pyastm.codec"]["record_types"]
    expect(codec_types == "".join(f[0] for f in expected["fields"]),
           "receive.pyastm.codec: records dispatched", codec_types)
    frames = [f.encode(ENCODING) for f in peer["encode.pyastm.iter_encode"]]
    expect(frames == expected["frames"], "encode.pyastm.iter_encode: frames differ",
           frames[:3], expected["frames"][:3])
    return notes


# -------------------------------------------------------------- peer process

def ensure_peer_venv() -> Path:
    """Create bench/.venv-peers with python-astm 0.5.0 (first run only)."""
    if PEER_STAMP.exists() and PEER_PYTHON.exists():
        return PEER_PYTHON
    if find_spec("astm") is not None:
        print("warning: 'astm' is importable in the project's interpreter; it belongs "
              "only in bench/.venv-peers", file=sys.stderr)
    print(f"setting up {PEER_VENV.relative_to(ROOT)} with {ASTM_REQUIREMENT} "
          "(first run only) ...", flush=True)
    if PEER_VENV.exists():
        shutil.rmtree(PEER_VENV)
    base = getattr(sys, "_base_executable", sys.executable)
    run_or_die([base, "-m", "venv", str(PEER_VENV)], "create the peer venv")
    pip = [str(PEER_PYTHON), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    run_or_die([*pip, "setuptools", "wheel"], "install setuptools and wheel")
    with tempfile.TemporaryDirectory() as tmp:
        # setup.py of astm 0.5.0 imports the package: it needs the shim while it builds
        shutil.copy(BENCH / "pyastm_shim.py", Path(tmp) / "sitecustomize.py")
        env = {**os.environ, "PYTHONPATH": tmp}
        run_or_die([*pip, "--no-build-isolation", ASTM_REQUIREMENT],
                   f"install {ASTM_REQUIREMENT}", env)
    run_or_die([str(PEER_PYTHON), "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); import pyastm_shim, astm; "
                "assert astm.__version__ == '0.5.0', astm.__version__", str(BENCH)],
               "import astm in the peer venv", peer_env())
    PEER_STAMP.write_text(ASTM_REQUIREMENT + "\n")
    return PEER_PYTHON


def peer_env() -> dict[str, str]:
    """The environment for the peer: nothing of ours on its path, and no -O
    (python-astm checks checksums with ``assert``)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONOPTIMIZE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_or_die(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"bench: could not {what} (exit {proc.returncode}); "
                         f"delete {PEER_VENV} and retry, or run with --no-peers")


def run_peer(python: Path, mode: str, w: Workload, settings: dict[str, Any],
             only: str = "") -> dict[str, Any]:
    workload = {
        "text": w.text.decode(ENCODING),
        "packed_frame": w.packed.decode(ENCODING),
        "chunks": [c.decode(ENCODING) for c in w.chunks],
        "frame_size": FRAME_SIZE,
        **settings,
    }
    proc = subprocess.run([str(python), str(BENCH / "pyastm_peer.py"), mode, only],
                          input=json.dumps(workload), capture_output=True, text=True,
                          env=peer_env(), cwd=ROOT, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench: python-astm peer ({mode}) failed")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# ------------------------------------------------------------------- report

def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "perf_counter_resolution": time.get_clock_info("perf_counter").resolution,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        info["mem_total_gib"] = round(mem_kib / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def cpu_scale_ms() -> float:
    """What ``python -m timeit "sum(range(10**6))"`` prints: best of 5, ms per loop."""
    timer = timeit.Timer("sum(range(10**6))")
    number, _ = timer.autorange()
    return min(timer.repeat(5, number)) / number * 1000


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def fmt_time(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k"
    return f"{per_second:.0f}"


def summarize(timings: dict[str, dict[str, Any]], w: Workload) -> list[dict[str, Any]]:
    per_message = {"records": w.n_records, "results": w.n_results, "frames": len(w.frames)}
    rows = []
    for name, (group, label, unit, ref) in CASES.items():
        if name not in timings:
            continue
        t = timings[name]
        count = per_message[unit]
        median = t["median"]
        rows.append({
            "name": name, "group": group, "label": label,
            "median_s": median, "min_s": t["min"], "max_s": t["max"],
            "spread_pct": 100 * (t["max"] - t["min"]) / median,
            "samples_s": t["samples"], "loops_per_rep": t["number"],
            "messages_per_s": 1 / median,
            "unit": unit, "units_per_message": count, "units_per_s": count / median,
            "relative_to": ref,
            "ratio": median / timings[ref]["median"] if ref in timings else None,
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'':10} {'implementation':57} {'median':>9} {'min-max':>17} {'spread':>6} "
            f"{'msg/s':>7} {'per second':>17} {'x ref':>6}")
    print(head)
    print("-" * len(head))
    group = ""
    for r in rows:
        if r["group"] != group and group:
            print()
        shown = r["group"] if r["group"] != group else ""
        group = r["group"]
        span = f"{fmt_time(r['min_s']).split()[0]}-{fmt_time(r['max_s'])}"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        print(f"{shown:10} {r['label']:57} {fmt_time(r['median_s']):>9} {span:>17} "
              f"{r['spread_pct']:5.1f}% {fmt_rate(r['messages_per_s']):>7} "
              f"{fmt_rate(r['units_per_s']) + ' ' + r['unit'] + '/s':>17} {ratio:>6}")


# --------------------------------------------------------------------- main

GROUPS = ("decode", "receive", "parts", "encode", "link")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (7)")
    parser.add_argument("--target", type=float, default=0.3,
                        help="seconds per repetition (0.3)")
    parser.add_argument("--no-peers", action="store_true",
                        help="time our code only (no python-astm venv)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = {"reps": args.reps, "target": args.target}

    w = build_workload()
    cases = our_cases(w)
    print(f"workload: H/P/O/{w.n_results}xR/L, {w.n_records} records, {len(w.text)} bytes "
          f"of text, {len(w.frames)} E1381 frames ({len(w.raw)} bytes on the wire)")
    try:
        expected = check_ours(w, cases)
        peer_python, peer_missing = None, "not run (--no-peers)" if args.no_peers else ""
        if not args.no_peers:
            try:
                peer_python = ensure_peer_venv()
            except SystemExit as exc:  # offline: our figures still count, the peer's are absent
                peer_missing = str(exc)
                print(f"python-astm NOT MEASURED: {peer_missing}", file=sys.stderr)
        notes: dict[str, Any] = {}
        astm_version = None
        if peer_python is not None:
            peer = run_peer(peer_python, "check", w, settings)
            astm_version = peer.pop("astm_version")
            notes = check_peer(expected, peer, w)
    except CheckFailed as exc:
        print(f"CHECK FAILED, nothing timed: {exc}", file=sys.stderr)
        return 1
    print("checks passed: same decoded fields, same 20 result rows, same ACKs, "
          "byte-identical frames" + ("" if peer_python else " (our code only)"))
    handler = notes.get("receive.pyastm.request_handler")
    if handler and handler["records_dispatched"] != w.n_records:
        print(f"note: astm.server.RequestHandler dispatched {handler['records_dispatched']} "
              f"records for {w.n_records} sent ({handler['record_types']}): it latches "
              "'chunked transfer' on the first frame, so the ETB-continued O record is cut")

    scale = cpu_scale_ms()
    load_before = os.getloadavg()
    timings: dict[str, dict[str, Any]] = {}
    for group in GROUPS:  # ours then python-astm, group by group, to limit drift between them
        for name, fn in cases.items():
            if name.startswith(group + "."):
                timings[name] = timing.measure(fn, reps=args.reps, target=args.target)
        if peer_python is not None and group in ("decode", "receive", "encode"):
            timings.update(run_peer(peer_python, "time", w, settings, only=group + "."))
    load_after = os.getloadavg()

    rows = summarize(timings, w)
    print(f"\n{args.reps} repetitions of ~{args.target} s each after a warm-up; "
          "times per message;\n'x ref' = median / the group's first row (2b parts: / the full "
          "receive path)\n")
    print_table(rows)
    wall = time.perf_counter() - started
    print(f"\nCPU scale: sum(range(10**6)) = {scale:.1f} ms; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}; wall time {wall:.0f} s")

    result = {
        "schema": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python bench/run.py", *(argv or sys.argv[1:])]),
        "git": git_state(),
        "machine": {**machine_info(), "cpu_scale_sum_range_1e6_ms": round(scale, 2),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "peer": {"astm": astm_version, "venv": str(PEER_VENV.relative_to(ROOT))}
        if peer_python else {"not_measured": peer_missing},
        "settings": {**settings, "timer": "time.perf_counter", "warmup_reps": 1,
                     "gc": "enabled, collected before each repetition"},
        "workload": {"records": w.n_records, "results": w.n_results,
                     "text_bytes": len(w.text), "frames": len(w.frames),
                     "wire_bytes": len(w.raw), "max_text": MAX_TEXT},
        "checks": {"passed": True, "peer_notes": notes},
        "cases": rows,
        "wall_seconds": round(wall, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
