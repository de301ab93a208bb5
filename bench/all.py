"""``make bench``: every benchmark, one after the other, in one command.

    .venv/bin/python bench/all.py            # about 15 minutes on the 2-vCPU VM
    .venv/bin/python bench/all.py --quick    # about 6 minutes, fewer repetitions/messages

1. ``bench/run.py``: the ASTM codec against python-astm 0.5.0 (CPU only);
2. ``bench/hl7_bench.py``: HL7 ORU^R01 parse, build and ACK against python-hl7 and hl7apy;
3. ``bench/statements.py``: SQL statements and store time of one message (in process);
4. ``bench/system.py``: the real gateway process: ingest over loopback TCP on SQLite and
   PostgreSQL, frame ACK latency, EOT to HIS ACK, a paced pty, memory per link; the
   peers' receivers.
5. ``bench/targets.py``: issue 9's remaining targets on the real gateway: frame ACKs
   while the database or the HIS stalls, an HIS outage and its drain, logging and
   metrics overhead, 256 active links, an RSS soak.

The machine (``nproc``, ``lscpu``, memory, kernel, Python) and the load
average before and after each step go to ``bench/results/machine.json``; each
step writes its own ``bench/results/*.json``. A step that fails is reported
and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({argv[0]} unavailable: {exc})"


def machine() -> dict[str, object]:
    return {"nproc": command_output("nproc"), "lscpu": command_output("lscpu"),
            "free": command_output("free", "-m"), "kernel": platform.release(),
            "python": sys.version, "platform": platform.platform(),
            "disk": command_output("df", "-hT", str(ROOT))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true",
                        help="our code only (no bench/.venv-peers)")
    args = parser.parse_args()
    py = sys.executable
    quick_codec = ["--reps", "3", "--target", "0.1"] if args.quick else []
    steps = [
        ("codec", [py, str(BENCH / "run.py"), *quick_codec,
                   *(["--no-peers"] if args.no_peers else [])]),
        ("hl7", [py, str(BENCH / "hl7_bench.py"), *quick_codec]),
        ("statements", [py, str(BENCH / "statements.py")]),
        ("system", [py, str(BENCH / "system.py"), *(["--quick"] if args.quick else []),
                    *(["--no-peers"] if args.no_peers else [])]),
        ("targets", [py, str(BENCH / "targets.py"), *(["--quick"] if args.quick else [])]),
    ]
    record: dict[str, object] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "machine": machine(), "steps": {}}
    started = time.perf_counter()
    failed = []
    for name, argv in steps:
        print(f"\n######## {name}: {' '.join(Path(a).name if a == py else a for a in argv)}",
              flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        status = subprocess.run(argv, cwd=ROOT, check=False).returncode
        record["steps"][name] = {  # type: ignore[index]
            "exit_status": status, "seconds": round(time.perf_counter() - t0, 1),
            "loadavg_before": load0, "loadavg_after": os.getloadavg()}
        if status:
            failed.append(name)
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    out = BENCH / "results" / "machine.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nmake bench: {record['wall_seconds']:.0f} s in all; machine and load averages in "
          f"{out.relative_to(ROOT)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
