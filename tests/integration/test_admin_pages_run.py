"""The administration pages in the real gateway: ``lis-gateway run`` wires the links' status
board, the wire recordings and the live mapping tables into the web app.

Real parts: ``lis-gateway run --config`` in a subprocess on SQLite, an analyzer link over
loopback TCP in E1381 framing, the web app over loopback HTTP. An ALT result arrives with
the site's roche-cobas table lacking code 685 and is held; the administrator fixes the row
from the web page; the next ALT result is mapped by the running gateway without a restart,
and reprocessing maps the held one with the same table version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lis_gateway.lifecycle import ResultState
from lis_gateway.mapping import load_table
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import audit_entries, verify_audit
from lis_gateway.store.engine import make_engine

from ..webapp.live import Browser, add_user
from ..webapp.live_admin import RULES_TEXT, SHIPPED, alt_message, send_astm, site_table_without_alt
from .test_crash import Gateway
from .test_rest_orders import web_port


@dataclass
class Remote:
    """What :class:`tests.webapp.live.Browser` needs of a web app: its URL."""

    url: str


def result_of(engine: Engine, accession: str) -> tuple[ResultState, str, str]:
    """State, local code and table version of a sample's only result."""
    with engine.begin() as conn:
        (info,) = repo.results_for_sample(conn, accession)
        return (judgements.result_status(conn, info.id).state, info.latest.content.code,
                info.latest.content.mapping_version)


@pytest.mark.integration
def test_run_serves_the_admin_pages_with_live_tables_and_the_status_board(
        tmp_path: Path) -> None:
    """Held, fixed from the page, the next message mapped at once, the held one
    reprocessed; the analyzers page and the wire recording come from the running links."""
    site_table_without_alt(tmp_path / "maps")
    (tmp_path / "rules.toml").write_text(RULES_TEXT, encoding="utf-8")
    db = tmp_path / "lis.db"
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{db}"
[mappings]
directories = ["maps"]
[wire]
record_dir = "wire"
[rules]
file = "rules.toml"
[web]
listen = "127.0.0.1:0"
[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    gateway = Gateway(config, tmp_path / "gateway.log")
    engine = make_engine(f"sqlite:///{db}")
    try:
        port, web = gateway.port("chem1"), web_port(gateway.log)
        add_user(engine, "root", "admin")
        send_astm(port, alt_message("G1"))
        assert result_of(engine, "G1")[:2] == (ResultState.HELD, "")

        browser = Browser(Remote(f"http://127.0.0.1:{web}"))  # type: ignore[arg-type]
        assert browser.login("root").status == 303
        status = browser.get("/analyzers").text.split('data-link="chem1"')[1].split("</tr>")[0]
        assert "đã lưu 1 ·" in status and "roche-cobas · tcp-server" in status
        assert 'data-code="685"' in browser.get("/mapping").text
        page = browser.get("/mapping/fix?analyzer=chem1&code=685").text
        based_on = re.search(r'name="based_on" value="([0-9a-f]+)"', page)
        assert based_on is not None
        answer = browser.post("/mapping/fix", [
            ("analyzer", "chem1"), ("code", "685"), ("based_on", based_on.group(1)),
            ("col_local_code", "ALT"), ("col_loinc", "1744-2"), ("col_name_vi", "ALT"),
            ("col_name_en", "ALT"), ("col_analyzer_unit", "U/L"), ("col_unit_ucum", "U/L")])
        assert answer.status == 303
        table = load_table([tmp_path / "maps", SHIPPED], "roche-cobas")
        assert table is not None and table.lookup("685") is not None

        send_astm(port, alt_message("G2"))
        assert result_of(engine, "G2") == (ResultState.AUTOVERIFIED, "ALT", table.version)
        assert browser.post("/mapping/reprocess", [("analyzer", "chem1"),
                                                   ("code", "685")]).status == 303
        assert result_of(engine, "G1") == (ResultState.AUTOVERIFIED, "ALT", table.version)

        wire = browser.get("/analyzers/wire?link=chem1")
        assert wire.status == 200 and "O|1|G2||^^^685" in wire.text
        with engine.begin() as conn:
            actions = [e.action for e in audit_entries(conn)]
            assert verify_audit(conn) == []
        assert {"mapping.edit", "mapping.reprocess", "view.wire"} <= set(actions)
    finally:
        engine.dispose()
        assert gateway.stop() == 0
