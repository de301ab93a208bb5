"""`export xml4` end to end on an SQLite file: problems first, then the XML, never half of it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

import drivers
from lis_gateway.autoverify import Autoverification
from lis_gateway.cli import main
from lis_gateway.config import SHIPPED_MAPPINGS, load_config
from lis_gateway.ingest import StoreSink, load_tables
from lis_gateway.lifecycle import Policy
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.validation import validate_sample
from tests.store.test_ingest import ASTM, fired, message

RECEIVED = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
RELEASED = datetime(2026, 11, 22, 1, 30, 20, tzinfo=UTC)  # 08:30 in Hanoi
PERIOD = ["--since", "2026-11-22", "--until", "2026-11-23"]


def site_table(directory: Path) -> None:
    """The shipped roche-cobas table with a service_code column; ALT has one (made up)."""
    lines = (SHIPPED_MAPPINGS / "roche-cobas.csv").read_text(encoding="utf-8").splitlines()
    out = [lines[0] + ",service_code"]
    for line in lines[1:]:
        if line.startswith("685,ALT,,"):
            line = line.replace("685,ALT,,", "685,ALT,1234567,", 1) + ",12.3456.0001"
        else:
            line += ","
        out.append(line)
    directory.mkdir()
    (directory / "roche-cobas.csv").write_text("\n".join(out) + "\n", encoding="utf-8")


def lab(tmp_path: Path) -> Path:
    """ALT 35 U/L on sample S77 received, validated by lan (one step: released)."""
    site_table(tmp_path / "site")
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"

[mappings]
directories = ["site"]

[lifecycle]
require_approval = false

[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    loaded = load_config(config)
    engine = make_engine(loaded.database_url)
    migrate(loaded.database_url, engine=engine)
    spec = drivers.get("roche-cobas")
    table = load_tables([spec], loaded.mapping_directories)[spec.table_name]
    one_step = Policy(require_approval=False)
    fired(StoreSink("chem1", spec, "tcp-server", table, NonThreadPool(engine),
                    utcnow=lambda: RECEIVED, autoverification=Autoverification(None, one_step)
                    ).message_received(message(ASTM)))
    with engine.begin() as conn:
        repo.create_user(conn, "lan", RECEIVED, roles=["technician"])
        [outcome] = validate_sample(conn, "S77", "lan", one_step, approve=False, at=RELEASED)
    engine.dispose()
    assert outcome.after.value == "released"
    return config


def give_visit(config: Path, number: str) -> None:
    """The HIS order's visit number on S77."""
    engine = make_engine(load_config(config).database_url)
    with engine.begin() as conn:
        conn.execute(update(s.samples).values(visit_number=number))
    engine.dispose()


def test_problems_first_then_the_xml(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without a visit number and a certificate: exit 2, nothing written; fixed: the row."""
    config = lab(tmp_path)
    capsys.readouterr()  # the sink's log line
    out = tmp_path / "xml4.xml"
    out.write_bytes(b"yesterday's file")
    args = ["export", "xml4", *PERIOD, "--out", str(out), "--config", str(config)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "sample S77 test ALT: MA_LK: the sample has no visit number: no HIS order carried one",
        "sample S77 test ALT: MA_BS_DOC_KQ: user 'lan', who released it, has no "
        "practising-certificate number: lis-gateway user certificate lan NUMBER",
        "2 problem(s) in 1 of 1 row(s) released 2026-11-22 00:00 to 2026-11-23 00:00 "
        "(Asia/Ho_Chi_Minh); nothing written"]
    assert out.read_bytes() == b"yesterday's file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".xml4")] == []

    give_visit(config, "V2026-000777")
    assert main(["user", "certificate", "lan", "0012345/HNO-CCHN", "--config",
                 str(config)]) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().err == (
        f"1 row(s) of 1 episode(s) released 2026-11-22 00:00 to 2026-11-23 00:00 "
        f"(Asia/Ho_Chi_Minh) written to {out}\n")
    data = out.read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    [item] = ET.fromstring(data).iter("CHI_TIET_CLS")
    assert [(child.tag, child.text or "") for child in item] == [
        ("MA_LK", "V2026-000777"), ("STT", "1"), ("MA_DICH_VU", "12.3456.0001"),
        ("MA_CHI_SO", "1234567"), ("TEN_CHI_SO", "Alanin aminotransferase (ALT/GPT)"),
        ("GIA_TRI", "35"), ("DON_VI_DO", "U/L"), ("MO_TA", ""), ("KET_LUAN", ""),
        ("NGAY_KQ", "202611220830"), ("MA_BS_DOC_KQ", "0012345/HNO-CCHN"), ("DU_PHONG", "")]


def test_stdout_time_zone_and_period_bounds(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """To standard output; NGAY_KQ in the zone asked; a period without the release is empty."""
    config = lab(tmp_path)
    give_visit(config, "V1")
    assert main(["user", "certificate", "lan", "77/BYT", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["export", "xml4", *PERIOD, "--time-zone", "UTC",
                 "--config", str(config)]) == 0
    root = ET.fromstring(capsys.readouterr().out.encode())
    assert root.findtext("DSACH_CHI_TIET_CLS/CHI_TIET_CLS/NGAY_KQ") == "202611220130"
    assert main(["export", "xml4", "--since", "2026-11-22T08:31", "--until", "2026-11-23",
                 "--config", str(config)]) == 0
    assert list(ET.fromstring(capsys.readouterr().out.encode()).iter("CHI_TIET_CLS")) == []
    assert main(["export", "xml4", "--since", "2026-11-22T08:30+07:00",
                 "--config", str(config)]) == 0  # until now
    assert len(list(ET.fromstring(capsys.readouterr().out.encode()).iter("CHI_TIET_CLS"))) == 1


def test_json_lists_rows_and_problems(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--json: every row with its sample and test, and the problems; exit 2 while any remain."""
    config = lab(tmp_path)
    give_visit(config, "V1")
    capsys.readouterr()
    assert main(["export", "xml4", *PERIOD, "--json", "--config", str(config)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert (document["since"], document["until"], document["time_zone"]) == (
        "2026-11-21T17:00:00+00:00", "2026-11-22T17:00:00+00:00", "Asia/Ho_Chi_Minh")
    [row] = document["rows"]
    assert (row["sample"], row["test"], row["MA_LK"], row["STT"], row["released_by"]) == (
        "S77", "ALT", "V1", 1, "lan")
    assert [p["field"] for p in document["problems"]] == ["MA_BS_DOC_KQ"]
    assert main(["export", "xml4", *PERIOD, "--json", "--approver-certificate", "1/X",
                 "--config", str(config)]) == 2  # only for releases without a person


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty period, an unknown zone, an unwritable --out."""
    config = lab(tmp_path)
    assert main(["export", "xml4", "--since", "2026-11-23", "--until", "2026-11-22",
                 "--config", str(config)]) == 2
    assert "must come after --since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "xml4", *PERIOD, "--time-zone", "Mars/Olympus"])
    assert "unknown time zone" in capsys.readouterr().err
    give_visit(config, "V1")
    assert main(["user", "certificate", "lan", "77/BYT", "--config", str(config)]) == 0
    missing = tmp_path / "no-such-dir" / "x.xml"
    assert main(["export", "xml4", *PERIOD, "--out", str(missing),
                 "--config", str(config)]) == 1
    assert "cannot write" in capsys.readouterr().err

