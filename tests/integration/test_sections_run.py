"""``lis-gateway run`` puts each configured analyzer's lab section into the store before
the links start (audited), and clears them when the configuration drops sections."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from lis_gateway.store import schema as s
from lis_gateway.store.audit import audit_entries
from lis_gateway.store.engine import make_engine

from .test_crash import Gateway

CONFIG = """
[database]
url = "sqlite:///{db}"
[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:0"
{chem}
[[analyzers]]
name = "heme1"
driver = "sysmex-xn"
transport = "tcp-server"
listen = "127.0.0.1:0"
{heme}
"""


def run_once(tmp_path: Path, chem: str, heme: str) -> dict[str, str]:
    """Start the gateway until its links listen, stop it; the analyzers' sections."""
    config = tmp_path / "gw.toml"
    db = tmp_path / "lis.db"
    config.write_text(CONFIG.format(db=db, chem=chem, heme=heme), encoding="utf-8")
    gateway = Gateway(config, tmp_path / "gateway.log")
    try:
        gateway.port("heme1")
    finally:
        assert gateway.stop() == 0
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            return dict(conn.execute(select(s.analyzers.c.name, s.analyzers.c.section)).all())
    finally:
        engine.dispose()


def test_run_keeps_the_stores_sections_in_step_with_the_configuration(tmp_path: Path) -> None:
    """Sections configured: stored and audited; configuration without sections: cleared."""
    assert run_once(tmp_path, 'section = "hoá sinh"', 'section = "huyết học"') == {
        "chem1": "hoá sinh", "heme1": "huyết học"}
    assert run_once(tmp_path, "", "") == {"chem1": "", "heme1": ""}
    engine = make_engine(f"sqlite:///{tmp_path / 'lis.db'}")
    try:
        with engine.begin() as conn:
            changes = [(e.target, json.loads(e.detail)) for e in audit_entries(conn)
                       if e.action == "analyzer.section"]
    finally:
        engine.dispose()
    assert changes == [("analyzer:chem1", {"from": "", "to": "hoá sinh"}),
                       ("analyzer:heme1", {"from": "", "to": "huyết học"}),
                       ("analyzer:chem1", {"from": "hoá sinh", "to": ""}),
                       ("analyzer:heme1", {"from": "huyết học", "to": ""})]
