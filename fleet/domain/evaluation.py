"""Pure scope evaluation: which actions a scope map grants on one repository.

Rules are compiled once into an index so that evaluating a repository costs a handful of
dictionary look-ups per path component, whatever the number of rules in the map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.domain.actions import Action
from fleet.domain.names import is_valid_repository
from fleet.domain.patterns import Pattern, PatternKind, parse_pattern

NO_ACTIONS: frozenset[Action] = frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: Pattern
    actions: frozenset[Action]


@dataclass(frozen=True, slots=True)
class CompiledScopeMap:
    """An immutable index of a scope map's rules."""

    root: frozenset[Action] = NO_ACTIONS
    exact: Mapping[str, frozenset[Action]] = field(default_factory=dict)
    prefixes: Mapping[str, frozenset[Action]] = field(default_factory=dict)

    def evaluate(self, repository: str) -> frozenset[Action]:
        """All actions of every rule matching ``repository``; matching rules add up.

        Matching ignores case (the index holds lowercased patterns).
        """
        repository = repository.lower() if repository.isascii() else repository
        if not is_valid_repository(repository):
            return NO_ACTIONS
        granted = set(self.root)
        granted |= self.exact.get(repository, NO_ACTIONS)
        if self.prefixes:
            # Every proper ancestor path "a", "a/b", ... of "a/b/c" is a candidate prefix.
            end = repository.find("/")
            while end != -1:
                granted |= self.prefixes.get(repository[:end], NO_ACTIONS)
                end = repository.find("/", end + 1)
        return frozenset(granted)


EMPTY_SCOPE_MAP = CompiledScopeMap()


def compile_rules(rules: Iterable[Rule]) -> CompiledScopeMap:
    root: set[Action] = set()
    exact: dict[str, set[Action]] = {}
    prefixes: dict[str, set[Action]] = {}
    for rule in rules:
        if rule.pattern.kind is PatternKind.ROOT:
            root |= rule.actions
        elif rule.pattern.kind is PatternKind.PREFIX:
            prefixes.setdefault(rule.pattern.key, set()).update(rule.actions)
        else:
            exact.setdefault(rule.pattern.key, set()).update(rule.actions)
    return CompiledScopeMap(
        root=frozenset(root),
        exact={k: frozenset(v) for k, v in exact.items()},
        prefixes={k: frozenset(v) for k, v in prefixes.items()},
    )


def compile_entries(entries: Iterable[tuple[str, Action]]) -> CompiledScopeMap:
    """Compile ``(pattern text, action)`` pairs as they are stored."""
    return compile_rules(Rule(parse_pattern(p), frozenset({a})) for p, a in entries)


def evaluate(rules: Iterable[Rule], repository: str) -> frozenset[Action]:
    """Convenience for one-off checks; hot paths keep a :class:`CompiledScopeMap`."""
    return compile_rules(rules).evaluate(repository)
