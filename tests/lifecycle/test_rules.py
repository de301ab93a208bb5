"""Autoverification rules: every kind, order and recording, shadow mode, the TOML loader."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.lifecycle import Action, ActorKind, Policy, ResultState, apply
from lis_gateway.mapping import MappingEntry
from lis_gateway.normalize import NormalizedResult, RowView
from lis_gateway.rules import (
    ALL_PASSED,
    SHADOW_REASON,
    AlwaysHoldRule,
    CriticalRule,
    DeltaRule,
    Facts,
    InstrumentFlagsRule,
    LimitsRule,
    Previous,
    RuleSet,
    Verdict,
    evaluate,
    facts_from_result,
)
from lis_gateway.rules_file import RulesError, load_rules
from lis_gateway.values import parse_value

T0 = datetime(2025, 3, 1, 8, 0)
OK = Facts(code="GLU", driver="roche_cobas", number=Decimal("5.0"), time=T0,
           autoverify_low=Decimal("3.0"), autoverify_high=Decimal("10.0"))
BASE = (AlwaysHoldRule("always"), CriticalRule("critical"))


def rs(*rules: object, shadow: bool = False) -> RuleSet:
    """A rule set with the mandatory rules first, then ``rules``."""
    return RuleSet("rs-7", shadow, (*BASE, *rules))  # type: ignore[arg-type]


def verdict(rule: object, facts: Facts) -> Verdict:
    """The verdict of one rule (after the mandatory ones) on the facts."""
    return evaluate(rs(rule), facts).outcomes[-1].verdict


def with_(**changes: object) -> Facts:
    """The passing facts with some fields changed."""
    return dataclasses.replace(OK, **changes)  # type: ignore[arg-type]


def test_a_clean_result_autoverifies() -> None:
    """With every rule passing, the decision is AUTOVERIFY, by the rule set as a whole."""
    d = evaluate(rs(LimitsRule("lim"), InstrumentFlagsRule("fl")), OK)
    assert d.autoverify and d.action is Action.AUTOVERIFY and d.reason == ""
    assert d.decided_by == ALL_PASSED and d.held_reasons == ()
    assert [o.verdict for o in d.outcomes] == [Verdict.PASS] * 4
    assert d.rule_set_version == "rs-7" and not d.shadow


@pytest.mark.parametrize("facts,why", [
    (with_(problems=("not-mapped: analyzer code 'X' is not in table t",)), "not-mapped"),
    (with_(problems=("unit-mismatch: the analyzer sent 'mg/dL'",)), "unit-mismatch"),
    (with_(empty=True, number=None), "missing value"),
    (with_(qc_hold=True), "QC failure"),
])
def test_always_hold_conditions_hold(facts: Facts, why: str) -> None:
    """Mapping and unit problems, empty values and QC failures always hold."""
    d = evaluate(rs(), facts)
    assert not d.autoverify and d.decided_by == "always" and why in d.held_reasons[0].text


def test_other_problems_hold_only_when_configured() -> None:
    """unknown-flag and timestamp problems pass unless listed as extra problems."""
    facts = with_(problems=("unknown-flag: 'Z'", "timestamp: unparsable"))
    assert evaluate(rs(), facts).autoverify
    strict = RuleSet("v", False, (AlwaysHoldRule("a", frozenset({"timestamp"})), BASE[1]))
    assert evaluate(strict, facts).held_reasons[0].text == "timestamp: unparsable"


@pytest.mark.parametrize("level", ["LL", "HH"])
def test_critical_values_always_hold(level: str) -> None:
    """A critical value holds, for acknowledgement, even inside wide limits."""
    d = evaluate(rs(LimitsRule("lim", Decimal(-100), Decimal(100))), with_(critical=level))
    assert d.decided_by == "critical" and "acknowledge" in d.reason


def test_instrument_flags_by_driver() -> None:
    """The driver's error codes hold, others pass; "*" covers unlisted drivers."""
    rule = InstrumentFlagsRule("fl", {"roche_cobas": frozenset({">Test"}),
                                      "*": frozenset({"E"})})
    assert verdict(rule, with_(raw_flags=(">Test",))) is Verdict.HOLD
    assert verdict(rule, with_(instrument_flags=(">Test",))) is Verdict.HOLD
    assert verdict(rule, with_(raw_flags=("H",), instrument_flags=("Q",))) is Verdict.PASS
    assert verdict(rule, with_(driver="sysmex_xn", instrument_flags=("E",))) is Verdict.HOLD
    assert verdict(rule, with_(driver="sysmex_xn", instrument_flags=(">Test",))) is Verdict.PASS


def test_instrument_flags_without_a_set_hold_on_any_flag() -> None:
    """For a driver without configured codes, any unmapped flag holds; mapped ones pass."""
    rule = InstrumentFlagsRule("fl", {"roche_cobas": frozenset({"E"})})
    assert verdict(rule, with_(driver="mindray_bs", instrument_flags=("Q",))) is Verdict.HOLD
    assert verdict(rule, with_(driver="mindray_bs", raw_flags=("H",))) is Verdict.PASS


@pytest.mark.parametrize("number,expected", [
    ("3.0", Verdict.PASS), ("10.0", Verdict.PASS), ("2.99", Verdict.HOLD),
    ("10.01", Verdict.HOLD)])
def test_limits_from_the_mapping_table_are_inclusive(number: str, expected: Verdict) -> None:
    """The mapping table's autoverification limits include their bounds."""
    assert verdict(LimitsRule("lim"), with_(number=Decimal(number))) is expected


def test_rule_limits_override_the_table() -> None:
    """A rule's own low/high replace the table's limits; one bound is enough."""
    assert verdict(LimitsRule("lim", high=Decimal("4.5")), OK) is Verdict.HOLD
    assert verdict(LimitsRule("lim", low=Decimal("4.5")), OK) is Verdict.PASS


@pytest.mark.parametrize("facts", [
    with_(autoverify_low=None, autoverify_high=None),
    with_(number=None),
    with_(comparator="<"),
])
def test_limits_hold_without_limits_or_a_plain_number(facts: Facts) -> None:
    """No limits, a text value or a censored value cannot be autoverified by limits."""
    assert verdict(LimitsRule("lim"), facts) is Verdict.HOLD


def test_rules_apply_only_to_their_tests() -> None:
    """A rule naming tests is not applicable to other tests."""
    rule = LimitsRule("lim", high=Decimal(1), tests=frozenset({"K"}))
    assert verdict(rule, OK) is Verdict.NOT_APPLICABLE
    assert verdict(rule, with_(code="K")) is Verdict.HOLD


ABS = DeltaRule("delta", timedelta(hours=72), absolute=Decimal("1.0"))
PCT = DeltaRule("delta", timedelta(hours=72), percent=Decimal("20"))


@pytest.mark.parametrize("rule,prev,expected", [
    (ABS, "4.0", Verdict.PASS), (ABS, "3.9", Verdict.HOLD), (ABS, "6.0", Verdict.PASS),
    (PCT, "4.2", Verdict.PASS), (PCT, "4.1", Verdict.HOLD), (PCT, "0", Verdict.HOLD),
    (PCT, "-5.0", Verdict.HOLD),
])
def test_delta_check_absolute_and_percent(rule: DeltaRule, prev: str, expected: Verdict) -> None:
    """The change from the previous result is held beyond the absolute or percent bound."""
    facts = with_(previous=Previous(Decimal(prev), T0 - timedelta(hours=1)))
    assert verdict(rule, facts) is expected


def test_delta_with_both_bounds_holds_when_either_is_exceeded() -> None:
    """With absolute and percent, exceeding one of them holds."""
    both = DeltaRule("delta", timedelta(hours=72), Decimal("100"), Decimal("1"))
    facts = with_(previous=Previous(Decimal("4.0"), T0))
    assert verdict(both, facts) is Verdict.HOLD


def test_delta_outside_the_window_or_without_previous_is_not_applicable() -> None:
    """A missing or too-old previous result makes the delta check not applicable."""
    old = with_(previous=Previous(Decimal("1.0"), T0 - timedelta(hours=73)))
    assert verdict(ABS, old) is Verdict.NOT_APPLICABLE
    assert verdict(ABS, OK) is Verdict.NOT_APPLICABLE
    assert evaluate(rs(ABS), old).autoverify


def test_delta_without_time_or_number_holds() -> None:
    """A delta check that cannot be computed holds."""
    prev = Previous(Decimal("5.0"), T0)
    assert verdict(ABS, with_(previous=prev, time=None)) is Verdict.HOLD
    assert verdict(ABS, with_(previous=prev, number=None)) is Verdict.HOLD


def test_every_rule_is_recorded_and_the_first_hold_decides() -> None:
    """All outcomes are kept in order; the first hold is the deciding rule."""
    rules = rs(LimitsRule("lim", high=Decimal(1)), ABS, InstrumentFlagsRule("fl"))
    facts = with_(qc_hold=True, instrument_flags=("W",))
    d = evaluate(rules, facts)
    assert [(o.rule_id, o.verdict) for o in d.outcomes] == [
        ("always", Verdict.HOLD), ("critical", Verdict.PASS), ("lim", Verdict.HOLD),
        ("delta", Verdict.NOT_APPLICABLE), ("fl", Verdict.HOLD)]
    assert [r.rule_id for r in d.held_reasons] == ["always", "lim", "fl"]
    assert d.decided_by == "always" and d.actor.id == "always"
    assert d.actor.kind is ActorKind.RULE and d.actor.rule_set_version == "rs-7"
    assert d.reason.startswith("always: QC failure")


def test_shadow_mode_records_but_never_autoverifies() -> None:
    """In shadow mode the rules' verdict is recorded and the effective action is HOLD."""
    d = evaluate(rs(LimitsRule("lim"), shadow=True), OK)
    assert d.autoverify and d.shadow and d.action is Action.HOLD
    assert d.reason == SHADOW_REASON and d.decided_by == ALL_PASSED
    held = evaluate(rs(LimitsRule("lim"), shadow=True), with_(critical="HH"))
    assert not held.autoverify and held.action is Action.HOLD and "critical" in held.reason


def test_decision_drives_the_lifecycle() -> None:
    """A decision's action, actor and reason are accepted by the lifecycle table."""
    for facts, state in ((OK, ResultState.AUTOVERIFIED), (with_(qc_hold=True), ResultState.HELD)):
        d = evaluate(rs(LimitsRule("lim")), facts)
        t = apply(ResultState.RECEIVED, d.action, d.actor, Policy(), reason=d.reason)
        assert t.to_state is state
    d = evaluate(rs(shadow=True), OK)
    t = apply(ResultState.RECEIVED, d.action, d.actor, Policy(), reason=d.reason)
    assert t.to_state is ResultState.HELD


@pytest.mark.parametrize("rules,message", [
    ((CriticalRule("c"),), "always-hold"),
    ((AlwaysHoldRule("a"),), "critical"),
    ((AlwaysHoldRule("a"), CriticalRule("a")), "unique"),
])
def test_rule_set_validation(rules: tuple[object, ...], message: str) -> None:
    """A rule set needs the mandatory kinds and unique ids."""
    with pytest.raises(ValueError, match=message):
        RuleSet("v", False, rules)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        RuleSet("", False, BASE)


def test_facts_from_a_normalized_result() -> None:
    """Facts keep raw and unmapped flags apart and take limits from the mapping entry."""
    row = RowView("S1", "GLU", "5.5", "mmol/L", "", ("N, >Test",), "F", "reportable", False)
    result = NormalizedResult(row, parse_value("5.5"), "GLU", "", "", "", "", "mmol/L",
                              Decimal("5.5"), ("N",), (">Test", "Q"), (), "F", "", "", (), "v1")
    entry = MappingEntry("GLU", "GLU", "", "", "", "", "", "mmol/L", "mmol/L", Decimal(1),
                         Decimal(0), None, None, None, Decimal("3.9"), Decimal("6.1"))
    facts = facts_from_result(result, driver="roche_cobas", entry=entry, qc_hold=False,
                              previous=None, received_at=T0)
    assert (facts.raw_flags, facts.instrument_flags) == (("N", ">Test"), (">Test", "Q"))
    assert (facts.autoverify_low, facts.autoverify_high, facts.time) == (
        Decimal("3.9"), Decimal("6.1"), T0)
    blank = dataclasses.replace(result, value=parse_value(""), number=None)
    assert facts_from_result(blank, driver="d", entry=None, qc_hold=False,
                             previous=None).empty


EXAMPLE = """
version = "2025-03-01.1"
shadow = true

[[rules]]
id = "always"
kind = "always-hold"
problems = ["unknown-flag"]

[[rules]]
id = "critical"
kind = "critical"

[[rules]]
id = "flags"
kind = "instrument-flags"
codes = { roche_cobas = [">Test", "ReagentEmpty"], "*" = ["E"] }

[[rules]]
id = "limits"
kind = "limits"

[[rules]]
id = "k-delta"
kind = "delta"
tests = ["K"]
absolute = 1.0
percent = "20"
window_hours = 72
"""


def test_load_rules_example() -> None:
    """The documented example file loads into the expected rule set."""
    rule_set = load_rules(EXAMPLE)
    assert (rule_set.version, rule_set.shadow) == ("2025-03-01.1", True)
    assert [r.id for r in rule_set.rules] == ["always", "critical", "flags", "limits", "k-delta"]
    assert rule_set.rules[0] == AlwaysHoldRule("always", frozenset({"unknown-flag"}))
    assert rule_set.rules[4] == DeltaRule("k-delta", timedelta(hours=72), Decimal("1.0"),
                                          Decimal("20"), frozenset({"K"}))
    flags = rule_set.rules[2]
    assert isinstance(flags, InstrumentFlagsRule)
    assert flags.codes["*"] == frozenset({"E"})


MINIMAL = 'version = "1"\n[[rules]]\nid = "a"\nkind = "always-hold"\n' \
          '[[rules]]\nid = "c"\nkind = "critical"\n'


@pytest.mark.parametrize("text,path", [
    ("version = ", ""),
    ('version = "1"\nbogus = 1', "bogus"),
    ("shadow = true", "version"),
    ('version = "1"\nshadow = "yes"', "shadow"),
    ('version = "1"\nrules = 3', "rules"),
    ('version = "1"', "rules"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "magic"\n', "rules[2].kind"),
    (MINIMAL + '[[rules]]\nkind = "limits"\n', "rules[2].id"),
    (MINIMAL + '[[rules]]\nid = "a"\nkind = "limits"\n', "rules[2].id"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\nhgh = 3\n', "rules[2].hgh"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\nlow = "abc"\n', "rules[2].low"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\nlow = true\n', "rules[2].low"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\nlow = "nan"\n', "rules[2].low"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\nlow = 5\nhigh = 1\n', "rules[2].low"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "limits"\ntests = "K"\n', "rules[2].tests"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "delta"\nwindow_hours = 1\n', "rules[2]"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "delta"\nabsolute = 1\n', "rules[2].window_hours"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "delta"\npercent = -1\nwindow_hours = 1\n',
     "rules[2].percent"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "instrument-flags"\ncodes = 1\n',
     "rules[2].codes"),
    (MINIMAL + '[[rules]]\nid = "x"\nkind = "instrument-flags"\ncodes = { d = [1] }\n',
     "rules[2].codes.d"),
    ('version = "1"\n[[rules]]\nid = "c"\nkind = "critical"\ntests = ["K"]\n',
     "rules[0].tests"),
])
def test_load_rules_errors_are_located(text: str, path: str) -> None:
    """Each invalid file raises RulesError naming the offending key path."""
    with pytest.raises(RulesError) as info:
        load_rules(text)
    assert info.value.path == path
    assert str(info.value).startswith(path)


FACTS = st.builds(
    Facts, code=st.sampled_from(["GLU", "K"]), driver=st.sampled_from(["roche_cobas", "x"]),
    number=st.none() | st.decimals(-50, 50, places=2),
    comparator=st.sampled_from(["", "<"]), empty=st.booleans(),
    raw_flags=st.lists(st.sampled_from([">Test", "E", "H"]), max_size=2).map(tuple),
    instrument_flags=st.lists(st.sampled_from([">Test", "Q"]), max_size=2).map(tuple),
    critical=st.sampled_from(["", "LL", "HH"]),
    problems=st.lists(st.sampled_from(["not-mapped: x", "unit-mismatch: y", "timestamp: z"]),
                      max_size=2).map(tuple),
    time=st.just(T0), qc_hold=st.booleans(),
    previous=st.none() | st.builds(Previous, st.decimals(-50, 50, places=2), st.just(T0)))


@settings(max_examples=300, deadline=None)
@given(facts=FACTS, shadow=st.booleans())
def test_decision_invariants(facts: Facts, shadow: bool) -> None:
    """Autoverify iff no rule held; mandatory conditions and shadow mode always hold."""
    rule_set = load_rules(EXAMPLE.replace("shadow = true", f"shadow = {str(shadow).lower()}"))
    d = evaluate(rule_set, facts)
    assert len(d.outcomes) == len(rule_set.rules)
    assert d.autoverify == all(o.verdict is not Verdict.HOLD for o in d.outcomes)
    mandatory = (facts.empty or facts.qc_hold or bool(facts.critical)
                 or any(p.startswith(("not-mapped", "unit-mismatch")) for p in facts.problems))
    if mandatory or shadow:
        assert d.action is Action.HOLD and d.reason
    if d.action is Action.AUTOVERIFY:
        assert facts.number is not None and not facts.comparator
        assert not facts.instrument_flags or facts.driver == "roche_cobas"
