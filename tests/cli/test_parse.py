"""`lis-gateway parse`: JSON lines out, problems on stderr, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lis_gateway.astm.frames import encode_frame
from lis_gateway.cli import main
from lis_gateway.wire import WireRecorder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"


def test_parse_prints_one_json_object_per_result(capsys: pytest.CaptureFixture[str]) -> None:
    """Each result is a JSON line with the documented keys; exit status 0."""
    assert main(["parse", str(FIXTURES / "roche_3.bin")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]
    expected = json.loads((FIXTURES / "roche_3.expected.json").read_text())["results"]
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected, strict=True):
        assert {k: row[k] for k in exp} == exp
        assert isinstance(row["flags"], list)


def test_generic_astm_test_code_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`^^^GLU` gives GLU, `^^^^WBC^1` gives WBC, a field without components is taken whole."""
    records = (b"H|\\^&\rP|1\rO|1|SID-1^rack^3\r"
               b"R|1|^^^GLU|5.5\rR|2|^^^^WBC^1|7.1\rR|3|ABO|A\rL|1|N\r")
    path = tmp_path / "bare.txt"
    path.write_bytes(records.replace(b"\r", b"\n"))
    assert main(["parse", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["sample_id"], r["test"], r["value"]) for r in rows] == [
        ("SID-1", "GLU", "5.5"), ("SID-1", "WBC", "7.1"), ("SID-1", "ABO", "A")]


def test_problems_go_to_stderr_with_positions(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad checksum is reported on stderr with its byte offset; results still print."""
    assert main(["parse", str(FIXTURES / "roche_4_bad_checksum.bin")]) == 0
    captured = capsys.readouterr()
    assert "offset" in captured.err and "bad-checksum" in captured.err
    assert captured.out.strip()


def test_nothing_parsed_gives_nonzero_status(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Only when no file yields a message is the exit status non-zero."""
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x05\x02garbage")
    assert main(["parse", str(junk)]) == 1
    assert "no message could be parsed" in capsys.readouterr().err
    assert main(["parse", str(junk), str(FIXTURES / "roche_1.bin")]) == 0


def test_unreadable_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is named on stderr; the status says nothing was parsed."""
    assert main(["parse", str(tmp_path / "missing.bin")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_encoding_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--encoding utf-8 decodes Vietnamese units and values correctly."""
    text = "H|\\^&\rP|1\rO|1|S9\rR|1|^^^HBSAG|Âm tính|\rL|1|N\r".encode()
    path = tmp_path / "utf8.bin"
    path.write_bytes(b"\x05" + encode_frame(1, text, final=True) + b"\x04")
    assert main(["parse", "--encoding", "utf-8", str(path)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["value"] == "Âm tính"


def test_wire_recording_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wire recording (rx and tx chunks) parses like the raw bytes it holds."""
    raw = (FIXTURES / "beckman_1.bin").read_bytes()
    path = tmp_path / "link.wire.jsonl"
    with path.open("wb") as stream:
        rec = WireRecorder(stream, "access2", 100.0)
        for i in range(0, len(raw), 7):
            rec.record("rx", raw[i:i + 7], 100.0 + i / 1000)
            rec.record("tx", b"\x06", 100.0 + i / 1000)
    assert main(["parse", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["test"] for r in rows] == ["TSH3"]


def test_unknown_driver_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt driver name lists the known ones."""
    with pytest.raises(SystemExit) as exc:
        main(["parse", "--driver", "nope", "x"])
    assert exc.value.code == 2
    assert "generic-astm" in capsys.readouterr().err


def test_console_script_runs() -> None:
    """`python -m lis_gateway --help` lists the parse command."""
    out = subprocess.run([sys.executable, "-m", "lis_gateway", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "parse" in out


SITE_TABLE = (
    "analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
    "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
    "autoverify_low,autoverify_high\n"
    "GLU,GLU,,,2345-7,Glucose,Glucose,mg/dL,mmol/L,0.0555,0,1,2.5,25,,\n")


def test_site_mapping_directory_maps_results(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--mapping DIR: codes, LOINC, UCUM unit and converted number appear; the rest says why."""
    (tmp_path / "generic-astm.csv").write_text(SITE_TABLE, encoding="utf-8")
    capture = tmp_path / "c.txt"
    capture.write_bytes(b"H|\\^&\nP|1\nO|1|S7\nR|1|^^^GLU|99|mg/dL\nR|2|^^^NA|140|mmol/L\nL|1\n")
    assert main(["parse", "--mapping", str(tmp_path), str(capture)]) == 0
    glu, na = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (glu["code"], glu["loinc"], glu["unit_ucum"], glu["number"]) == (
        "GLU", "2345-7", "mmol/L", "5.5")
    assert glu["problems"] == [] and len(glu["mapping_version"]) == 12
    assert na["code"] == "" and na["problems"][0].startswith("not-mapped")


def test_bad_site_table_stops_with_located_errors(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A table with an error is not used at all: exit status 2, file:line: column named."""
    (tmp_path / "generic-astm.csv").write_text(SITE_TABLE.replace("2345-7", "2345-8"),
                                                encoding="utf-8")
    assert main(["parse", "--mapping", str(tmp_path), str(FIXTURES / "roche_1.bin")]) == 2
    err = capsys.readouterr().err
    assert "generic-astm.csv:2: column loinc" in err


def test_drivers_lists_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """`lis-gateway drivers --json` gives each driver's protocol, transport and query style."""
    assert main(["drivers", "--json"]) == 0
    facts = {d["name"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert facts["generic-astm"]["serial"] == "9600 8N1"
    assert facts["generic-hl7"]["framing"] == "mllp"


def test_text_token_files_get_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manual's trace with <STX>/<CR> written as text is refused with a clear hint."""
    path = tmp_path / "manual.txt"
    path.write_bytes(b"<ENQ>\n<STX>1H|\\^&<CR><ETX>A1<CR><LF>\n<EOT>\n")
    main(["parse", str(path)])
    assert "control characters as text" in capsys.readouterr().err
