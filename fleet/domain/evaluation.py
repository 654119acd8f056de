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
    """An immutable index of a scope map's rules, one rule per distinct pattern.

    :meth:`matching` is the one statement of which rules match a repository: :meth:`evaluate`
    (the token endpoint's answer) is the union of their actions, and the access explainer
    (:mod:`fleet.domain.explain`) shows them, so the two cannot disagree.
    """

    root: Rule | None = None
    exact: Mapping[str, Rule] = field(default_factory=dict)
    prefixes: Mapping[str, Rule] = field(default_factory=dict)

    def matching(self, repository: str) -> list[Rule]:
        """Every rule matching ``repository``: ``*``, then ``prefix/*`` from the shortest
        prefix, then the exact name. An invalid name matches nothing.

        Matching ignores case: the index is keyed by lowercased patterns.
        """
        repository = repository.lower() if repository.isascii() else repository
        if not is_valid_repository(repository):
            return []
        found = [] if self.root is None else [self.root]
        if self.prefixes:
            # Every proper ancestor path "a", "a/b", ... of "a/b/c" is a candidate prefix.
            end = repository.find("/")
            while end != -1:
                rule = self.prefixes.get(repository[:end])
                if rule is not None:
                    found.append(rule)
                end = repository.find("/", end + 1)
        rule = self.exact.get(repository)
        if rule is not None:
            found.append(rule)
        return found

    def evaluate(self, repository: str) -> frozenset[Action]:
        """All actions of every rule matching ``repository``; matching rules add up."""
        matched = self.matching(repository)
        if not matched:
            return NO_ACTIONS
        if len(matched) == 1:
            return matched[0].actions
        return NO_ACTIONS.union(*[rule.actions for rule in matched])


EMPTY_SCOPE_MAP = CompiledScopeMap()
ROOT_PATTERN = Pattern(PatternKind.ROOT, "")


def compile_rules(rules: Iterable[Rule]) -> CompiledScopeMap:
    """Index ``rules``; rules of one pattern merge into one (their actions add up)."""
    root: set[Action] | None = None
    # Keyed by the lowercased pattern; each keeps the first spelling it was written with.
    exact: dict[str, tuple[Pattern, set[Action]]] = {}
    prefixes: dict[str, tuple[Pattern, set[Action]]] = {}
    for rule in rules:
        if rule.pattern.kind is PatternKind.ROOT:
            root = (root or set()) | rule.actions
        else:
            index = prefixes if rule.pattern.kind is PatternKind.PREFIX else exact
            index.setdefault(rule.pattern.key, (rule.pattern, set()))[1].update(rule.actions)
    return CompiledScopeMap(
        root=None if root is None else Rule(ROOT_PATTERN, frozenset(root)),
        exact={k: Rule(p, frozenset(v)) for k, (p, v) in exact.items()},
        prefixes={k: Rule(p, frozenset(v)) for k, (p, v) in prefixes.items()},
    )


def compile_entries(entries: Iterable[tuple[str, Action]]) -> CompiledScopeMap:
    """Compile ``(pattern text, action)`` pairs as they are stored."""
    return compile_rules(Rule(parse_pattern(p), frozenset({a})) for p, a in entries)


def evaluate(rules: Iterable[Rule], repository: str) -> frozenset[Action]:
    """Convenience for one-off checks; hot paths keep a :class:`CompiledScopeMap`."""
    return compile_rules(rules).evaluate(repository)
