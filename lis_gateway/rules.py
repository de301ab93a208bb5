"""Autoverification (CLSI AUTO10 style): rules as data, evaluation as a pure function.

Theory of operation
-------------------
A :class:`RuleSet` is a version, a shadow flag and an ordered tuple of
rules. :func:`evaluate` runs every rule, in order, over the :class:`Facts`
of one result and records each :class:`RuleOutcome` (PASS, HOLD or
NOT_APPLICABLE). The first HOLD decides (``Decision.decided_by``); the
later outcomes are still recorded so a technician sees every reason.
A result is autoverified only when no rule holds.

Rule kinds (:data:`RULE_KINDS`, the key ``kind`` of the rules file):

* ``always-hold``: mapping problems (``not-mapped``, ``unit-mismatch``),
  empty values and a QC-failure hold always hold; more problem prefixes
  (``unknown-flag``, ``timestamp``) may be added. Mandatory, not per test.
* ``critical``: a critical value (``LL``/``HH``) always holds, to be raised
  for acknowledgement. Mandatory, not per test.
* ``instrument-flags``: holds on an instrument error flag (raw or
  unmapped) from the driver's set of codes (``"*"``: the set for drivers
  not listed); for a driver with no set, any flag the driver's flag map
  does not know holds.
* ``limits``: the value must lie within the autoverification limits (the
  rule's own ``low``/``high``, else the mapping table's); no limits,
  a non-numeric or a censored (``<``, ``>``) value holds.
* ``delta``: against the same patient's previous result of the same test
  (an input, :class:`Previous`), within ``window``: holds when the change
  exceeds ``absolute`` or ``percent`` (either one suffices).

Rules other than the mandatory ones may name ``tests`` (local codes);
for other tests they are NOT_APPLICABLE.

Shadow mode: ``Decision.autoverify`` records what the rules concluded,
but ``Decision.action`` is always HOLD, so nothing is released
automatically; when the rules would have autoverified, the hold's reason
says so (``SHADOW_REASON``). The lab compares the recorded decisions
with its technicians' before turning the rule set on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from .lifecycle import Action, Actor
from .mapping import MappingEntry
from .normalize import NormalizedResult

#: Problem prefixes that always hold (from :mod:`lis_gateway.normalize`).
MANDATORY_PROBLEMS: frozenset[str] = frozenset({"not-mapped", "unit-mismatch"})
#: ``Decision.decided_by`` when no rule held.
ALL_PASSED = "all-passed"
#: The hold reason when a shadow rule set would have autoverified.
SHADOW_REASON = "shadow mode: the rules would autoverify; a technician must validate"


class Verdict(enum.Enum):
    """One rule's outcome."""

    PASS = "pass"
    HOLD = "hold"
    NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True, slots=True)
class Previous:
    """The same patient's previous result of the same test (same unit)."""

    number: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look at for one result.

    Attributes:
        code: the local test code ("" when not mapped).
        driver: the driver family name (for the instrument error flags).
        number: the value in the reported unit, or None.
        comparator: ``<``, ``>``, ... for censored values, else "".
        empty: the analyzer sent no value (or a blank one).
        raw_flags: the analyzer's flags as sent (split), mapped or not.
        instrument_flags: flags the driver's flag map does not know, and pseudo-result flags.
        critical: ``LL``, ``HH`` or "".
        problems: the normalizer's problems ("not-mapped: ...", ...).
        time: the result time (for the delta window), or None.
        autoverify_low: the mapping table's lower limit, or None.
        autoverify_high: the mapping table's upper limit, or None.
        qc_hold: the instrument's QC for this test has failed.
        previous: the previous result for the delta check, or None.
    """

    code: str
    driver: str
    number: Decimal | None
    comparator: str = ""
    empty: bool = False
    raw_flags: tuple[str, ...] = ()
    instrument_flags: tuple[str, ...] = ()
    critical: str = ""
    problems: tuple[str, ...] = ()
    time: datetime | None = None
    autoverify_low: Decimal | None = None
    autoverify_high: Decimal | None = None
    qc_hold: bool = False
    previous: Previous | None = None


def facts_from_result(result: NormalizedResult, *, driver: str, entry: MappingEntry | None,
                      qc_hold: bool, previous: Previous | None,
                      received_at: datetime | None = None) -> Facts:
    """Collect the facts of a normalized result.

    Args:
        result: the normalized result.
        driver: the driver family name.
        entry: the mapping entry (for the autoverification limits), or None.
        qc_hold: the QC for this test and instrument currently fails.
        previous: the previous result for the delta check, or None.
        received_at: the time used when the result carries none.

    Returns:
        The facts.
    """
    raw = tuple(p for f in result.row.flags for p in f.replace(",", " ").split())
    return Facts(
        code=result.code, driver=driver, number=result.number,
        comparator=result.value.comparator,
        empty=result.value.empty or not result.value.raw.strip(),
        raw_flags=raw, instrument_flags=result.instrument_flags, critical=result.critical,
        problems=result.problems,
        time=result.result_time or received_at,
        autoverify_low=entry.autoverify_low if entry else None,
        autoverify_high=entry.autoverify_high if entry else None,
        qc_hold=qc_hold, previous=previous)


Check = tuple[Verdict, str]
_NA: Check = (Verdict.NOT_APPLICABLE, "")


@dataclass(frozen=True, slots=True)
class AlwaysHoldRule:
    """Mapping and unit problems, empty values and QC holds always hold."""

    kind: ClassVar[str] = "always-hold"
    id: str
    extra_problems: frozenset[str] = frozenset()

    def check(self, facts: Facts) -> Check:
        """Hold on the first always-hold condition met."""
        prefixes = MANDATORY_PROBLEMS | self.extra_problems
        for problem in facts.problems:
            if problem.split(":", 1)[0].strip() in prefixes:
                return Verdict.HOLD, problem
        if facts.empty:
            return Verdict.HOLD, "missing value"
        if facts.qc_hold:
            return Verdict.HOLD, "QC failure: release held"
        return Verdict.PASS, ""


@dataclass(frozen=True, slots=True)
class CriticalRule:
    """A critical value always holds and must be acknowledged."""

    kind: ClassVar[str] = "critical"
    id: str

    def check(self, facts: Facts) -> Check:
        """Hold when the normalizer marked the value critical."""
        if facts.critical:
            return Verdict.HOLD, f"critical value ({facts.critical}): acknowledge"
        return Verdict.PASS, ""


@dataclass(frozen=True, slots=True)
class InstrumentFlagsRule:
    """Holds on the driver's instrument error flags."""

    kind: ClassVar[str] = "instrument-flags"
    id: str
    codes: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    tests: frozenset[str] = frozenset()

    def check(self, facts: Facts) -> Check:
        """Hold on a listed error flag; without a set for the driver, on any unmapped flag."""
        errors = self.codes.get(facts.driver, self.codes.get("*"))
        if errors is None:
            suspects = facts.instrument_flags
        else:
            suspects = tuple(f for f in (*facts.raw_flags, *facts.instrument_flags)
                             if f.strip() in errors)
        if suspects:
            return Verdict.HOLD, f"instrument flag {suspects[0]!r}"
        return Verdict.PASS, ""


@dataclass(frozen=True, slots=True)
class LimitsRule:
    """The value must lie within the autoverification limits (inclusive)."""

    kind: ClassVar[str] = "limits"
    id: str
    low: Decimal | None = None
    high: Decimal | None = None
    tests: frozenset[str] = frozenset()

    def check(self, facts: Facts) -> Check:
        """Hold outside the limits, without limits, or on a non-numeric value."""
        own = self.low is not None or self.high is not None
        low = self.low if own else facts.autoverify_low
        high = self.high if own else facts.autoverify_high
        if low is None and high is None:
            return Verdict.HOLD, "no autoverification limits for this test"
        if facts.number is None or facts.comparator:
            return Verdict.HOLD, "not a plain number"
        if (low is not None and facts.number < low) or (
                high is not None and facts.number > high):
            return Verdict.HOLD, f"{facts.number} outside {low}..{high}"
        return Verdict.PASS, ""


@dataclass(frozen=True, slots=True)
class DeltaRule:
    """The change from the previous result stays within an absolute or percent bound."""

    kind: ClassVar[str] = "delta"
    id: str
    window: timedelta
    absolute: Decimal | None = None
    percent: Decimal | None = None
    tests: frozenset[str] = frozenset()

    def check(self, facts: Facts) -> Check:
        """Hold on a too-large change; NOT_APPLICABLE without a recent previous result."""
        prev = facts.previous
        if prev is None:
            return _NA
        if facts.time is None:
            return Verdict.HOLD, "delta check: the result has no time"
        if abs(facts.time - prev.time) > self.window:
            return _NA
        if facts.number is None or facts.comparator:
            return Verdict.HOLD, "delta check: not a plain number"
        change = abs(facts.number - prev.number)
        if self.absolute is not None and change > self.absolute:
            return Verdict.HOLD, f"delta {change} exceeds {self.absolute}"
        if self.percent is not None and (
                change * 100 > self.percent * abs(prev.number) if prev.number
                else change > 0):
            return Verdict.HOLD, f"delta from {prev.number} exceeds {self.percent}%"
        return Verdict.PASS, ""


Rule = AlwaysHoldRule | CriticalRule | InstrumentFlagsRule | LimitsRule | DeltaRule
#: Rule classes by the ``kind`` key of the rules file.
RULE_KINDS: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (AlwaysHoldRule, CriticalRule, InstrumentFlagsRule, LimitsRule, DeltaRule)
}
#: Kinds every rule set must contain (and which apply to every test).
MANDATORY_KINDS: frozenset[str] = frozenset({AlwaysHoldRule.kind, CriticalRule.kind})


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An ordered, versioned set of rules.

    Attributes:
        version: recorded with every decision.
        shadow: decisions are recorded, nothing is autoverified.
        rules: evaluated in this order.

    Raises:
        ValueError: no version, duplicate rule ids, or a mandatory kind missing.
    """

    version: str
    shadow: bool
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not self.version:
            raise ValueError("a rule set needs a version")
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        missing = MANDATORY_KINDS - {r.kind for r in self.rules}
        if missing:
            raise ValueError(f"a rule set must contain: {', '.join(sorted(missing))}")


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one rule said about one result."""

    rule_id: str
    kind: str
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a result is held: the rule and its explanation."""

    rule_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a rule set for one result.

    Attributes:
        autoverify: the rules concluded "autoverify" (recorded also in shadow mode).
        held_reasons: one per holding rule, in rule order.
        outcomes: every rule's outcome, in rule order.
        rule_set_version: the version that decided.
        shadow: the rule set ran in shadow mode.
        decided_by: the first holding rule's id, or :data:`ALL_PASSED`.
    """

    autoverify: bool
    held_reasons: tuple[Reason, ...]
    outcomes: tuple[RuleOutcome, ...]
    rule_set_version: str
    shadow: bool
    decided_by: str

    @property
    def action(self) -> Action:
        """The effective lifecycle action: AUTOVERIFY only when not in shadow mode."""
        return Action.AUTOVERIFY if self.autoverify and not self.shadow else Action.HOLD

    @property
    def actor(self) -> Actor:
        """The deciding rule as a lifecycle actor."""
        return Actor.rule(self.decided_by, self.rule_set_version)

    @property
    def reason(self) -> str:
        """The reason text for the lifecycle transition ("" when autoverified)."""
        if self.action is Action.AUTOVERIFY:
            return ""
        if not self.held_reasons:
            return SHADOW_REASON
        return "; ".join(f"{r.rule_id}: {r.text}" for r in self.held_reasons)


def _applies(rule: Rule, code: str) -> bool:
    tests: frozenset[str] = getattr(rule, "tests", frozenset())
    return not tests or code in tests


def evaluate(rule_set: RuleSet, facts: Facts) -> Decision:
    """Run every rule in order over one result's facts.

    Args:
        rule_set: the rules.
        facts: the result's facts.

    Returns:
        The decision, with every rule's outcome; the first hold decides.
    """
    outcomes = []
    for rule in rule_set.rules:
        verdict, detail = rule.check(facts) if _applies(rule, facts.code) else _NA
        outcomes.append(RuleOutcome(rule.id, rule.kind, verdict, detail))
    reasons = tuple(Reason(o.rule_id, o.detail) for o in outcomes if o.verdict is Verdict.HOLD)
    return Decision(not reasons, reasons, tuple(outcomes), rule_set.version, rule_set.shadow,
                    reasons[0].rule_id if reasons else ALL_PASSED)
