"""StoreSink with autoverification, and reprocessing held results, on both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

import drivers
from lis_gateway.autoverify import Autoverification
from lis_gateway.ingest import StoreSink
from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.mapping import load_table
from lis_gateway.reprocess import REPROCESS_REASON, reprocess_held
from lis_gateway.rules_file import load_rules
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool

from .test_ingest import ASTM, MAPPINGS, T0, fired, message

RULES = load_rules("""
version = "r1"
[[rules]]
id = "always"
kind = "always-hold"
[[rules]]
id = "crit"
kind = "critical"
[[rules]]
id = "alt-limits"
kind = "limits"
low = 5
high = 40
""")
SPEC = drivers.get("roche-cobas")


def receive_unmapped(engine: Engine) -> int:
    """Receive the ALT message on a link without a mapping table; returns the result id."""
    sink = StoreSink("chem1", SPEC, "tcp-server", None, NonThreadPool(engine),
                     utcnow=lambda: T0, autoverification=Autoverification(RULES, Policy()))
    stored = fired(sink.message_received(message(ASTM)))
    assert isinstance(stored, repo.StoredMessage)
    return stored.result_ids[0]


def test_sink_judges_in_the_storing_transaction(engine: Engine) -> None:
    """An unmapped result received by StoreSink is HELD by the always-hold rule at once."""
    rid = receive_unmapped(engine)
    with engine.begin() as conn:
        status = judgements.result_status(conn, rid)
        outcomes = judgements.rule_outcomes(conn, status.version_id)
    assert status.state is ResultState.HELD
    assert status.reasons[0].startswith("always: not-mapped")
    assert [o[1] for o in outcomes] == ["hold", "pass", "pass"]


def test_reprocess_creates_a_new_version_when_the_mapping_changes(engine: Engine) -> None:
    """After the table appears, reprocess stores version 2 (reason, audit) and judges it."""
    rid = receive_unmapped(engine)
    tables = {SPEC.table_name: load_table([MAPPINGS], SPEC.table_name)}
    at = T0 + timedelta(hours=1)
    with engine.begin() as conn:
        [done] = reprocess_held(conn, {"chem1": SPEC}, tables, RULES, Policy(), at,
                                source="test")
    assert (done.result_id, done.new_version, done.state) == (rid, 2, ResultState.AUTOVERIFIED)
    with engine.begin() as conn:
        v1, v2 = repo.result_versions(conn, rid)
        status = judgements.result_status(conn, rid)
        actions = [e.action for e in repo.audit_entries(conn)]
    assert (v2.reason, v2.supersedes_id, v2.content.code) == (REPROCESS_REASON, v1.id, "ALT")
    assert v1.content.code == ""
    assert (status.state, status.version_id) == (ResultState.AUTOVERIFIED, v2.id)
    assert "result.reprocess" in actions


def test_reprocess_with_an_unchanged_mapping_only_records_outcomes(engine: Engine) -> None:
    """Without a mapping change no version is added; the result stays held, audited."""
    rid = receive_unmapped(engine)
    with engine.begin() as conn:
        [done] = reprocess_held(conn, {"chem1": SPEC}, {SPEC.table_name: None}, RULES,
                                Policy(), T0, source="test")
        versions = repo.result_versions(conn, rid)
        outcomes = judgements.rule_outcomes(conn, versions[0].id)
        actions = [e.action for e in repo.audit_entries(conn)]
    assert (done.new_version, done.state) == (None, ResultState.HELD)
    assert done.note.startswith("mapping unchanged; still held")
    assert len(versions) == 1 and len(outcomes) == 6
    assert actions[-1] == "result.reevaluate"
