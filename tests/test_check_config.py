"""``lis-gateway check-config``: the shipped examples pass; each kind of broken
configuration is refused with a message naming the key path (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lis_gateway.cli import main

from .integration.test_http_delivery import certificate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOOD = """
[database]
url = "sqlite:///lis.db"
[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:15001"
"""


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_small_example_passes_with_a_warning_for_an_absent_serial_port(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(EXAMPLES / "small-lab.toml", capsys)
    assert status == 0, err
    assert "ok: 3 analyzer(s), 1 destination(s), orders over MLLP, web on 127.0.0.1:8080" in out
    if not Path("/dev/ttyUSB0").exists():
        assert "analyzer heme1: /dev/ttyUSB0 does not exist now" in err


def test_the_large_example_passes_once_its_secrets_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the token and CA files it names each; with them it is accepted."""
    for name in ("large-lab.toml", "rules.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "mappings").mkdir()
    status, _out, err = check(tmp_path / "large-lab.toml", capsys)
    assert status == 2
    assert "destinations[0].ca_file: cannot read the CA certificate" in err
    assert "destinations[1].token_file: cannot read the token file" in err
    assert "orders.api_token_file: cannot read the token file" in err
    cert, _key = certificate(tmp_path)
    cert.rename(tmp_path / "emr-ca.pem")
    (tmp_path / "his-api.token").write_text("his-api-token-0123456789\n", encoding="utf-8")
    (tmp_path / "his-orders.token").write_text("his-orders-token-0123456789\n",
                                               encoding="utf-8")
    status, out, err = check(tmp_path / "large-lab.toml", capsys)
    assert status == 0, err
    assert "ok: 8 analyzer(s), 2 destination(s), orders over MLLP, orders over REST" in out
    assert "postgresql+psycopg://lis_gateway@localhost/lis_gateway" in out


@pytest.mark.parametrize(("text", "expected"), [
    ("[database\nurl = 1", "not valid TOML"),
    (GOOD + "[colour]\nx = 1\n", "colour: unknown key"),
    (GOOD.replace('url = "sqlite:///lis.db"\n', ""), "database.url: missing"),
    (GOOD.replace("tcp-server", "tcp-sever"), "analyzers[0].transport: expected"),
    (GOOD.replace("roche-cobas", "roche-kobas"), "analyzers[0].driver: unknown driver"),
    (GOOD.replace("127.0.0.1:15001", "127.0.0.1:99999"), "analyzers[0].listen: expected"),
    (GOOD + GOOD.split("\n", 3)[3],
     "analyzers[1].name: 'chem1' is already the name of analyzers[0]"),
    (GOOD + "[logging]\nlevel = \"loud\"\n", "logging.level: expected debug or info"),
    (GOOD.replace('"roche-cobas"', '"mindray-bs"') + "order_download = true\n",
     "analyzers[0].order_download: driver mindray-bs does not take pushed orders"),
    (GOOD + "[[destinations]]\nname = \"his\"\ntype = \"rest-json\"\n"
            "url = \"https://his.example/api\"\nhost = \"h\"\n",
     "destinations[0].host: not a key of rest-json destinations (it belongs to hl7-mllp)"),
    (GOOD + "[orders]\napi_token_file = \"t\"\n", "orders.api_token_file: the order API "
                                                  "needs [web] listen"),
    (GOOD + "[rules]\nfile = \"rules.toml\"\n", "rules.file: cannot read"),
], ids=["toml", "unknown-section", "no-database-url", "transport", "driver", "port",
        "duplicate-name", "log-level", "download-on-hl7", "other-types-key", "api-without-web",
        "rules-file"])
def test_each_kind_of_broken_configuration_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    status, out, err = check(path, capsys)
    assert status == 2 and out == ""
    assert expected in err, err
    assert "the gateway would not start" in err


def test_a_broken_mapping_table_is_located_by_file_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "maps").mkdir()
    shipped = (EXAMPLES.parent / "mappings" / "roche-cobas.csv").read_text("utf-8")
    header = shipped.splitlines()[0]
    (tmp_path / "maps" / "roche-cobas.csv").write_text(
        header + "\n685,ALT,,,1742-6,ALT,ALT,U/l,U/L,one,0,0,,,,\n", encoding="utf-8")
    path = tmp_path / "gw.toml"
    path.write_text(GOOD + '[mappings]\ndirectories = ["maps"]\n', encoding="utf-8")
    status, _out, err = check(path, capsys)
    assert status == 2
    assert "analyzers[chem1]: mapping table: " in err and "roche-cobas.csv:2" in err, err
