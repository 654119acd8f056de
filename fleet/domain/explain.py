"""The access explainer: the decision on one repository and action, and every rule behind it.

Pure, like :mod:`fleet.domain.evaluation`, and built on the very same call: the rules shown are
:meth:`CompiledScopeMap.matching`, whose union is what :meth:`CompiledScopeMap.evaluate` gives
the token endpoint. Whether a token can sign in at all (its status, its passwords' expiries) is
decided here too, by :func:`password_is_live`, which the endpoint's password check calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from fleet.domain.actions import Action, sort_actions
from fleet.domain.evaluation import CompiledScopeMap, Rule
from fleet.domain.names import is_valid_rule_repository


class Reason(StrEnum):
    """Why access is denied; more than one may hold, all are reported."""

    TOKEN_DISABLED = "TokenDisabled"
    NO_LIVE_PASSWORD = "NoLivePassword"
    NO_SCOPE_MAP = "NoScopeMap"
    INVALID_REPOSITORY = "InvalidRepository"
    NO_RULE_MATCHED = "NoRuleMatched"
    ACTION_NOT_GRANTED = "ActionNotGranted"


def password_is_live(token_enabled: bool, expiry: datetime | None, now: datetime) -> bool:
    """Whether a password signs in: its token is enabled and it has not expired."""
    return token_enabled and (expiry is None or expiry > now)


@dataclass(frozen=True, slots=True)
class PasswordState:
    name: str  # password1 or password2
    expiry: datetime | None
    live: bool


@dataclass(frozen=True, slots=True)
class TokenState:
    """What decides whether a token can sign in at all, whatever its scope map grants."""

    enabled: bool
    passwords: tuple[PasswordState, ...]

    @classmethod
    def of(
        cls, enabled: bool, passwords: Sequence[tuple[str, datetime | None]], now: datetime
    ) -> TokenState:
        return cls(
            enabled,
            tuple(
                PasswordState(name, expiry, password_is_live(enabled, expiry, now))
                for name, expiry in sorted(passwords)
            ),
        )

    @property
    def can_sign_in(self) -> bool:
        return any(p.live for p in self.passwords)


@dataclass(frozen=True, slots=True)
class MatchedRule:
    rule: Rule
    grants: bool  # whether it holds the action asked about

    @property
    def pattern(self) -> str:
        return str(self.rule.pattern)

    @property
    def actions(self) -> list[str]:
        return sort_actions(self.rule.actions)


@dataclass(frozen=True, slots=True)
class Explanation:
    repository: str
    action: Action
    matched: tuple[MatchedRule, ...]
    # What the matching rules grant on the repository, as the token endpoint computes it.
    granted: frozenset[Action]
    denied_because: tuple[Reason, ...]

    @property
    def allowed(self) -> bool:
        return not self.denied_because

    @property
    def granting(self) -> tuple[MatchedRule, ...]:
        return tuple(m for m in self.matched if m.grants)


def explain(
    scope: CompiledScopeMap | None,
    repository: str,
    action: Action,
    token: TokenState | None = None,
) -> Explanation:
    """Allowed or denied, with the matching rules and every reason for a denial.

    ``scope`` is None for a token whose scope map was deleted; ``token`` is None when a scope
    map is explained on its own (no token's status or passwords count then).
    """
    matched = tuple(
        MatchedRule(rule, action in rule.actions)
        for rule in (scope.matching(repository) if scope is not None else [])
    )
    granted = scope.evaluate(repository) if scope is not None else frozenset()
    reasons: list[Reason] = []
    if token is not None and not token.enabled:
        reasons.append(Reason.TOKEN_DISABLED)
    elif token is not None and not token.can_sign_in:
        reasons.append(Reason.NO_LIVE_PASSWORD)
    if scope is None:
        reasons.append(Reason.NO_SCOPE_MAP)
    elif not is_valid_rule_repository(repository):  # matching ignores case, as here
        reasons.append(Reason.INVALID_REPOSITORY)
    elif not matched:
        reasons.append(Reason.NO_RULE_MATCHED)
    elif action not in granted:
        reasons.append(Reason.ACTION_NOT_GRANTED)
    return Explanation(repository, action, matched, granted, tuple(reasons))
