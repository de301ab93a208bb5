"""Re-mapping held results after a mapping table or rule set changed.

:func:`reprocess_held` takes every result whose current state is HELD,
decodes its first message again from the stored bytes with its analyzer's
driver, normalizes it with the *current* mapping table and finds the result
again by its fingerprint. When the content changes, a new version is
inserted (reason :data:`REPROCESS_REASON`, audited as ``result.reprocess``)
and judged by the current rules like a new result. When it does not, the
current rules' outcomes are recorded on the held version; a held result is
never autoverified in place (the lifecycle has no such transition): a
person validates it.

The stored bytes are read by the analyzer's driver through
:func:`lis_gateway.capture.decode_capture`, the reader of ``lis-gateway
parse``, so every kind of stored message is read again the way it was read on
arrival: ASTM records, HL7 messages, and Beckman AU online texts
(protocol ``au``: the text's blocks as received, read by the driver's own
decoder, as :func:`lis_gateway.ingest.au_rows` does).

Versions written by a person (corrections) are left alone. No SQL here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from drivers import DriverSpec
from lis_gateway.autoverify import Autoverification, decide, judge_result
from lis_gateway.capture import decode_capture, normalize_report
from lis_gateway.lifecycle import Action, Policies, Policy, ResultState
from lis_gateway.mapping import MappingTable
from lis_gateway.normalize import NormalizedResult
from lis_gateway.rules import RuleSet
from lis_gateway.store import judgements, repository

#: The reason of a version created by reprocessing.
REPROCESS_REASON = "reprocessed after mapping/rule change"
#: The author of such a version.
REPROCESS_AUTHOR = "system:reprocess"


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """What reprocessing did to one held result.

    Attributes:
        result_id: the result.
        test: its test code as sent.
        new_version: the version created, or None.
        state: its state afterwards.
        note: what happened, for people.
    """

    result_id: int
    test: str
    new_version: int | None
    state: ResultState
    note: str


def _find(raw: bytes, spec: DriverSpec, table: MappingTable | None, analyzer_id: int,
          fingerprint: str) -> NormalizedResult | None:
    report = decode_capture(raw, spec)
    seen: dict[str, int] = {}
    for _number, result in normalize_report(report, spec, table):
        base = repository.result_fingerprint(analyzer_id, result, 0)
        seen[base] = seen.get(base, -1) + 1
        if repository.result_fingerprint(analyzer_id, result, seen[base]) == fingerprint:
            return result
    return None


def reprocess_held(conn: Connection, specs: Mapping[str, DriverSpec],
                   tables: Mapping[str, MappingTable | None], rules: RuleSet | None,
                   policy: Policy | Policies, at: datetime, *,
                   source: str = "",
                   needs_order: Mapping[str, bool] | None = None,
                   only: Collection[int] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Reprocessed]:
    """Re-map and re-judge every HELD result; see the module docstring.

    Args:
        conn: one transaction for the whole run.
        specs: the driver of each configured analyzer, by analyzer name.
        tables: the current mapping table by table name (None: no table).
        rules: the current rule set, or None.
        policy: the lab's policy.
        at: timezone-aware time.
        needs_order: by analyzer name, whether its results need a HIS order
            (as under ``run``: orders configured and the analyzer not unsolicited).
        source: for the audit log.
        only: reprocess just these results (ids) among the held ones (None: all).
        progress: told ``(done, total)`` after each result (a long run's progress).

    Returns:
        One entry per held result, oldest first.
    """
    out: list[Reprocessed] = []
    held = [info for info in judgements.held_results(conn)
            if only is None or info.id in only]
    for done, info in enumerate(held):
        if progress is not None:
            progress(done, len(held))
        spec = specs.get(info.analyzer)
        latest = info.latest
        if spec is None:
            out.append(Reprocessed(info.id, info.test_code, None, ResultState.HELD,
                                   f"analyzer {info.analyzer!r} is not configured"))
            continue
        if not (latest.author.startswith("analyzer:") or latest.author == REPROCESS_AUTHOR):
            out.append(Reprocessed(info.id, info.test_code, None, ResultState.HELD,
                                   f"version {latest.version} was written by {latest.author}"))
            continue
        table = tables.get(spec.table_name)
        analyzer_id, fingerprint, raw = judgements.result_origin(conn, info.id)
        result = _find(raw, spec, table, analyzer_id, fingerprint)
        if result is None:
            out.append(Reprocessed(info.id, info.test_code, None, ResultState.HELD,
                                   "the result could not be read again from its message"))
            continue
        av = Autoverification(rules, policy, table, spec.name,
                              require_order=bool((needs_order or {}).get(info.analyzer)))
        content = repository.content_of(result)
        if content != latest.content:
            new = repository.correct_result(conn, latest.id, content, reason=REPROCESS_REASON,
                                            author=REPROCESS_AUTHOR, at=at, source=source,
                                            audit_action="result.reprocess")
            transition = judge_result(conn, info.id, result, av, at, source=source)
            out.append(Reprocessed(info.id, info.test_code, new.version, transition.to_state,
                                   "re-mapped: new version"))
            continue
        note = "mapping unchanged; no rule set configured"
        if rules is not None:
            decision = decide(rules, result, driver=spec.name, table=table,
                              previous=judgements.previous_for_delta(conn, info.id),
                              received_at=at)
            judgements.record_rule_outcomes(conn, latest.id, decision.outcomes,
                                            decision.rule_set_version, at)
            note = ("mapping unchanged; the rules now pass, a person must validate"
                    if decision.action is Action.AUTOVERIFY
                    else f"mapping unchanged; still held: {decision.reason}")
        repository.append_audit(conn, actor=REPROCESS_AUTHOR, action="result.reevaluate",
                                target=f"result:{info.id}",
                                detail={"version": latest.version, "note": note,
                                        "rule_set_version": rules.version if rules else ""},
                                source=source, at=at)
        out.append(Reprocessed(info.id, info.test_code, None, ResultState.HELD, note))
    if progress is not None:
        progress(len(held), len(held))
    return out
