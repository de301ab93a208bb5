"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers, bounded in time.

The three harnesses (``fuzz_astm.py``, ``fuzz_hl7.py``, ``fuzz_values.py``) run at
the same time, each for :data:`SECONDS` seconds (``LIS_FUZZ_SECONDS`` overrides), on
a copy of the seed corpus in ``tests/fuzz/corpus``. A crash, a hang (over 10 s on
one input) or a memory blow-up fails the test, which names the input libFuzzer
saved under ``var/fuzz/<harness>/`` (replay it with
``.venv/bin/python tests/fuzz/fuzz_<harness>.py var/fuzz/<harness>/crash-...``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HARNESSES = {"astm": 8192, "hl7": 8192, "values": 256}  # name: longest input tried
SECONDS = int(os.environ.get("LIS_FUZZ_SECONDS", "10"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """Run every harness at once; yield each one's exit status and output."""
    work = tmp_path_factory.mktemp("fuzz")
    procs = {}
    for name, max_len in HARNESSES.items():
        corpus = work / name
        shutil.copytree(HERE / "corpus" / name, corpus)
        artifacts = ROOT / "var" / "fuzz" / name
        artifacts.mkdir(parents=True, exist_ok=True)
        log = (work / f"{name}.log").open("wb")
        procs[name] = (subprocess.Popen(
            [sys.executable, str(HERE / f"fuzz_{name}.py"), f"-max_total_time={SECONDS}",
             "-timeout=10", "-rss_limit_mb=2048", f"-max_len={max_len}",
             f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus)],
            cwd=HERE, stdout=log, stderr=subprocess.STDOUT), log, work / f"{name}.log")
    results = {}
    for name, (proc, log, path) in procs.items():
        try:
            proc.wait(timeout=SECONDS * 3 + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        results[name] = (proc.returncode, path.read_text("utf-8", "replace"))
    yield results


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_fuzzing_finds_no_crash(runs: dict[str, tuple[int, str]], name: str) -> None:
    """The harness ran for its time on the parsers and found nothing that crashes."""
    status, output = runs[name]
    saved = re.findall(r"Test unit written to (\S+)", output)
    assert status == 0 and not saved, (
        f"fuzz_{name} failed (status {status}); input saved as {saved}:\n"
        + "\n".join(output.splitlines()[-60:]))
    done = re.search(r"Done (\d+) runs", output)
    assert done is not None and int(done.group(1)) > 100, output[-2000:]
    coverage = re.findall(r"cov: (\d+)", output)
    assert coverage and int(coverage[-1]) > 10, "the harness reached no code"
