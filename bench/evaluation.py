"""Scope evaluation time against the number of rules in a map (pure ``fleet.domain``).

A map of N distinct repository-action entries mixes ``prefix/*`` rules at two depths, exact
names and, from 10 entries on, one ``*`` root rule; the first rule is a prefix, so even the
one-rule map takes the prefix walk. Probes hit an exact rule, a deep prefix and no rule. Each
figure is the best of several timed loops (as ``timeit`` reports), each loop bounded in time
and in calls: the machine is shared, and the best run is the one least disturbed by others.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from fleet.domain.actions import Action
from fleet.domain.evaluation import CompiledScopeMap, Rule, compile_rules
from fleet.domain.patterns import parse_pattern

RULE_COUNTS = (1, 10, 100, 250, 500)
PROBES = (
    "team1/app0",  # an exact rule (and the root rule, from 10 rules on)
    "team0/sub/deeper/image",  # prefix rules at two depths (from 3 rules on)
    "nobody/has/this/repository",  # no rule but the root one
)
ACTIONS = tuple(Action)


@dataclass(frozen=True)
class EvaluationResult:
    rules: int
    compile_us: float
    evaluate_ns: dict[str, float]  # best-of-repeats ns per evaluate() call, per probe
    calls: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def rules_for(count: int) -> list[Rule]:
    """``count`` distinct rules of one action each: prefixes, exact names, sub-prefixes, root."""
    rules: list[Rule] = []
    for i in range(count):
        action = frozenset({ACTIONS[i % len(ACTIONS)]})
        if i == count - 1 and count >= 10:
            text = "*"
        elif i % 3 == 0:
            text = f"team{i}/*"
        elif i % 3 == 1:
            text = f"team{i}/app0"
        else:
            text = f"team{i - 2}/sub/*"
        rules.append(Rule(parse_pattern(text), action))
    return rules


def _ns_per_call(
    compiled: CompiledScopeMap, probe: str, budget_s: float, max_calls: int
) -> tuple[float, int]:
    calls = 0
    batch = 1_000
    evaluate = compiled.evaluate
    started = time.perf_counter()
    deadline = started + budget_s
    while calls < max_calls and time.perf_counter() < deadline:
        for _ in range(batch):
            evaluate(probe)
        calls += batch
    return (time.perf_counter() - started) / calls * 1e9, calls


def measure(
    counts: tuple[int, ...] = RULE_COUNTS,
    *,
    repeats: int = 7,
    budget_s: float = 0.1,
    max_calls: int = 200_000,
) -> list[EvaluationResult]:
    results = []
    for count in counts:
        rules = rules_for(count)
        started = time.perf_counter()
        compiled = compile_rules(rules)
        compile_us = (time.perf_counter() - started) * 1e6
        per_probe: dict[str, float] = {}
        total_calls = 0
        for probe in PROBES:
            samples = []
            for _ in range(repeats):
                ns, calls = _ns_per_call(compiled, probe, budget_s, max_calls)
                samples.append(ns)
                total_calls += calls
            per_probe[probe] = min(samples)
        results.append(EvaluationResult(count, compile_us, per_probe, total_calls))
    return results
