"""The autoverification rules file (TOML): ``load_rules(text) -> RuleSet``.

Errors name the key path (``rules[2].window_hours``); unknown keys are
refused, so a typo never silently disables a rule. See :mod:`lis_gateway.rules`
for what each rule kind does.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .rules import (
    MANDATORY_KINDS,
    AlwaysHoldRule,
    CriticalRule,
    DeltaRule,
    InstrumentFlagsRule,
    LimitsRule,
    Rule,
    RuleSet,
)


class RulesError(ValueError):
    """The rules file is invalid.

    Attributes:
        path: the key path of the offending value (``rules[2].window_hours``), or "".
        message: what is wrong.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


Table = dict[str, Any]


def _keys(table: Table, known: frozenset[str], path: str) -> None:
    for key in table:
        if key not in known:
            raise RulesError(f"{path}.{key}" if path else key, "unknown key")


def _text(table: Table, key: str, path: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{path}.{key}" if path else key, "a non-empty string is required")
    return value.strip()


def _decimal(table: Table, key: str, path: str) -> Decimal | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RulesError(f"{path}.{key}", "a number is required")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RulesError(f"{path}.{key}", f"not a number: {value!r}") from None
    if not number.is_finite():
        raise RulesError(f"{path}.{key}", "a finite number is required")
    return number


def _strings(value: object, path: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RulesError(path, "a list of non-empty strings is required")
    return frozenset(v.strip() for v in value)


def _tests(t: Table, p: str) -> frozenset[str]:
    return _strings(t["tests"], f"{p}.tests") if "tests" in t else frozenset()


def _codes(t: Table, p: str) -> dict[str, frozenset[str]]:
    codes = t.get("codes", {})
    if not isinstance(codes, dict):
        raise RulesError(f"{p}.codes", "a table of driver -> list of codes is required")
    return {driver: _strings(v, f"{p}.codes.{driver}") for driver, v in codes.items()}


def _delta(t: Table, p: str) -> DeltaRule:
    absolute, percent = _decimal(t, "absolute", p), _decimal(t, "percent", p)
    if absolute is None and percent is None:
        raise RulesError(p, "a delta rule needs absolute or percent")
    for key, bound in (("absolute", absolute), ("percent", percent)):
        if bound is not None and bound < 0:
            raise RulesError(f"{p}.{key}", "must not be negative")
    hours = _decimal(t, "window_hours", p)
    if hours is None or hours <= 0:
        raise RulesError(f"{p}.window_hours", "a positive number of hours is required")
    return DeltaRule(t["id"], timedelta(hours=float(hours)), absolute, percent, _tests(t, p))


def _limits(t: Table, p: str) -> LimitsRule:
    low, high = _decimal(t, "low", p), _decimal(t, "high", p)
    if low is not None and high is not None and low > high:
        raise RulesError(f"{p}.low", "low is above high")
    return LimitsRule(t["id"], low, high, _tests(t, p))


#: How each kind is read: its allowed keys and its builder.
_READERS: dict[str, tuple[frozenset[str], Callable[[Table, str], Rule]]] = {
    "always-hold": (frozenset({"problems"}), lambda t, p: AlwaysHoldRule(
        t["id"], _strings(t.get("problems", []), f"{p}.problems"))),
    "critical": (frozenset(), lambda t, p: CriticalRule(t["id"])),
    "instrument-flags": (frozenset({"codes", "tests"}), lambda t, p: InstrumentFlagsRule(
        t["id"], _codes(t, p), _tests(t, p))),
    "limits": (frozenset({"low", "high", "tests"}), _limits),
    "delta": (frozenset({"absolute", "percent", "window_hours", "tests"}), _delta),
}


def _rule(item: object, path: str, seen: set[str]) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(path, "a table is required")
    kind = _text(item, "kind", path)
    if kind not in _READERS:
        raise RulesError(f"{path}.kind", f"unknown kind {kind!r}; one of {sorted(_READERS)}")
    extra, build = _READERS[kind]
    _keys(item, frozenset({"id", "kind"}) | extra, path)
    rule_id = _text(item, "id", path)
    if rule_id in seen:
        raise RulesError(f"{path}.id", f"duplicate rule id {rule_id!r}")
    seen.add(rule_id)
    return build({**item, "id": rule_id}, path)


def load_rules(text: str) -> RuleSet:
    """Read a rule set from TOML text.

    Args:
        text: the rules file (keys ``version``, ``shadow``, ``[[rules]]``).

    Returns:
        The rule set.

    Raises:
        RulesError: invalid TOML, or an invalid value, located by its key path.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError("", f"invalid TOML: {exc}") from None
    _keys(data, frozenset({"version", "shadow", "rules"}), "")
    version = _text(data, "version", "")
    shadow = data.get("shadow", False)
    if not isinstance(shadow, bool):
        raise RulesError("shadow", "true or false is required")
    items = data.get("rules", [])
    if not isinstance(items, list):
        raise RulesError("rules", "an array of tables ([[rules]]) is required")
    seen: set[str] = set()
    rules = tuple(_rule(item, f"rules[{i}]", seen) for i, item in enumerate(items))
    missing = MANDATORY_KINDS - {r.kind for r in rules}
    if missing:
        raise RulesError("rules", f"a rule set must contain: {', '.join(sorted(missing))}")
    return RuleSet(version, shadow, rules)
