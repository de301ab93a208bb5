"""``unsolicited = true``: the patient comes from the analyzer's own record, marked as such."""

from __future__ import annotations

import json
from datetime import date, timedelta

from sqlalchemy import Engine, select

import drivers
from lis_gateway.autoverify import Autoverification
from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.ingest import StoreSink
from lis_gateway.lifecycle import Policy
from lis_gateway.mapping import load_table
from lis_gateway.outbound.compose import compose_oru
from lis_gateway.rules_file import load_rules
from lis_gateway.store import outbox
from lis_gateway.store import schema as s
from lis_gateway.store.audit import audit_entries
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.validation import validate_sample

from ..outbound.test_compose import NOW, ROUTE, segment
from .test_ingest import MAPPINGS, T0, fired, message
from .test_lifecycle_store import RULES, users
from .test_orders import ORM, receive
from .test_outbox import enqueue

#: A cobas message whose P record carries the analyzer's own patient (made up):
#: P-3 and P-4 empty, P-5 the ID, P-6 last^first^middle, P-8 birth date, P-9 sex.
ASTM = (b"H|\\^&|||c311^1\rP|1|||P-77|TRAN^BINH^THI||19851203|F\rO|1|CD0001||^^^685\r"
        b"R|1|^^^685/|35|U/L||N||F||||20261122075900|P1\rL|1|N\r")


def ingest(engine: Engine, raw: bytes = ASTM, name: str = "xn1", *,
           unsolicited: bool = True) -> None:
    """One message through a link's store sink (rules judge it: held, always)."""
    spec = drivers.get("roche-cobas")
    sink = StoreSink(name, spec, "tcp-server", load_table([MAPPINGS], spec.table_name),
                     NonThreadPool(engine), utcnow=lambda: T0, adopt_patients=unsolicited,
                     autoverification=Autoverification(load_rules(RULES), Policy()))
    fired(sink.message_received(message(raw)))


def sample(engine: Engine, accession: str = "CD0001") -> object:
    """The sample row."""
    with engine.begin() as conn:
        return conn.execute(select(s.samples).where(s.samples.c.accession == accession)).one()


def test_an_unsolicited_analyzer_gives_the_patient_and_it_is_marked(engine: Engine) -> None:
    """P-5 (no P-3/P-4) as the ID, P-6 name as written, P-8, P-9; source and analyzer kept."""
    ingest(engine)
    row = sample(engine)
    assert (row.patient_source, row.patient_analyzer, row.hospital_id, row.family_name,
            row.middle_name, row.given_name, row.birth_date, row.sex) == (
        "analyzer", "xn1", "P-77", "TRAN", "THI", "BINH", date(1985, 12, 3), "F")
    with engine.begin() as conn:
        actions = [e.action for e in audit_entries(conn)]
    assert "sample.patient-from-analyzer" in actions


def test_an_analyzer_that_is_not_unsolicited_gives_no_patient(engine: Engine) -> None:
    """Without ``unsolicited`` nothing is taken from the analyzer: never guessed."""
    ingest(engine, unsolicited=False)
    row = sample(engine)
    assert (row.patient_source, row.hospital_id, row.given_name) == ("", None, "")


def test_the_first_source_wins_and_the_his_replaces_an_analyzer_patient(
        engine: Engine) -> None:
    """A second analyzer changes nothing; an HIS order replaces every analyzer field."""
    ingest(engine)
    ingest(engine, ASTM.replace(b"P-77", b"P-99").replace(b"|35|", b"|36|"), name="xn2")
    assert sample(engine).hospital_id == "P-77"
    receive(engine, ORM)  # the HIS's order for CD0001
    row = sample(engine)
    assert (row.patient_source, row.patient_analyzer, row.hospital_id, row.family_name,
            row.given_name, row.birth_date, row.sex) == (
        "his", "", "BN0001", "Nguyễn", "An", date(1980, 1, 2), "M")
    ingest(engine, ASTM.replace(b"|35|", b"|37|"))  # a later run does not take it back
    assert sample(engine).patient_source == "his"
    with engine.begin() as conn:
        replaced = [e for e in audit_entries(conn) if e.action == "sample.patient-replaced"]
    assert [json.loads(e.detail) for e in replaced] == [{"was": "analyzer", "analyzer": "xn1"}]


def test_the_oru_says_the_patient_id_is_the_analyzers(engine: Engine) -> None:
    """PID-3 carries the ID as type PT with the analyzer as assigning authority, not PI."""
    users(engine)
    ingest(engine)
    with engine.begin() as conn:
        validate_sample(conn, "CD0001", "lan", Policy(require_approval=False), approve=False,
                        at=T0 + timedelta(minutes=1))
    enqueue(engine)
    with engine.begin() as conn:
        [entry] = outbox.entries(conn)
        item = outbox.payload(conn, entry.id)
    assert (item.patient_analyzer, item.hospital_id) == ("xn1", "P-77")
    pid = segment(compose_oru(item, ROUTE, NOW, HierarchicDesignator("BV_TEST")), "PID")
    assert pid[3] == "P-77^^^xn1^PT"
    assert pid[5] == "TRAN^BINH^THI^^^^L" and pid[7] == "19851203" and pid[8] == "F"
