"""The access explainer: may this token (or scope map) do this action on this repository, and
which rules say so.

The decision is :func:`fleet.domain.explain.explain` over the map compiled by the same
:func:`compile_entries` the token endpoint uses, with the token's status and passwords judged
by the endpoint's own :func:`password_is_live`. Three indexed queries, whatever the registry's
size: the token with its map, its passwords, the map's entries (at most the per-map limit).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from fleet.db.models import ENABLED, SLOTS, ScopeMap, ScopeMapEntry, Token, TokenPassword
from fleet.domain.actions import Action, parse_action, sort_actions
from fleet.domain.errors import NotFoundError, ValidationError
from fleet.domain.evaluation import compile_entries
from fleet.domain.explain import Explanation, Reason, TokenState, explain
from fleet.domain.names import MAX_REPOSITORY_LENGTH, validate_repository
from fleet.services.context import ServiceContext
from fleet.services.views import AccessView, DenialView, PasswordStateView, RuleView

MAX_NAME_CHARS = 64  # the longest token or scope-map name a row can hold
MAX_ACTION_CHARS = 32


def _check_name(value: str, what: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise ValidationError(
            f"a {what} name is at most {MAX_NAME_CHARS} characters (got {len(value)})",
            code="InvalidName",
        )
    return value


def _check_action(value: str) -> Action:
    if len(value) > MAX_ACTION_CHARS:
        raise ValidationError(
            f"unknown action (got {len(value)} characters): expected one of "
            + ", ".join(a.value for a in Action),
            code="InvalidAction",
        )
    return parse_action(value)


def _check_repository(value: str) -> str:
    if len(value) > MAX_REPOSITORY_LENGTH:
        raise ValidationError(
            f"a repository name is at most {MAX_REPOSITORY_LENGTH} characters (got {len(value)})",
            code="InvalidRepositoryName",
        )
    return validate_repository(value)


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.isoformat()


class AccessService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def explain(
        self,
        *,
        repository: str,
        action: str,
        token: str | None = None,
        scope_map: str | None = None,
    ) -> AccessView:
        """Explain for ``token`` (its map, status and passwords) or ``scope_map`` alone.

        Bad input (neither or both names, an over-long name, an invalid repository name, an
        unknown action) raises ``ValidationError``; an unknown name ``NotFoundError``.
        """
        if bool(token) == bool(scope_map):
            raise ValidationError(
                "give either a token name or a scope map name, not both or neither",
                code="InvalidRequest",
            )
        if token:
            _check_name(token, "token")
        if scope_map:
            _check_name(scope_map, "scope map")
        _check_repository(repository)
        asked = _check_action(action)
        with self.ctx.db.session() as s:
            if token:
                return self._for_token(s, token, repository, asked)
            name = scope_map or ""
            row = s.exec(select(ScopeMap).where(ScopeMap.name == name)).first()
            if row is None:
                raise NotFoundError(f"scope map {name!r} does not exist", code="ScopeMapNotFound")
            return self._answer(s, row, repository, asked)

    def _for_token(self, s: Session, name: str, repository: str, action: Action) -> AccessView:
        found = s.exec(
            select(Token, ScopeMap)
            .join(ScopeMap, col(ScopeMap.id) == col(Token.scope_map_id), isouter=True)
            .where(Token.name == name)
        ).first()
        if found is None:
            raise NotFoundError(f"token {name!r} does not exist", code="TokenNotFound")
        row, scope = found
        passwords = s.exec(
            select(TokenPassword.slot, TokenPassword.expiry).where(TokenPassword.token_id == row.id)
        ).all()
        state = TokenState.of(row.status == ENABLED, list(passwords), self.ctx.clock())
        return self._answer(s, scope, repository, action, row, state)

    def _answer(
        self,
        s: Session,
        scope: ScopeMap | None,
        repository: str,
        action: Action,
        token: Token | None = None,
        state: TokenState | None = None,
    ) -> AccessView:
        entries: list[tuple[str, Action]] = []
        if scope is not None:
            rows = s.exec(
                select(ScopeMapEntry.repository, ScopeMapEntry.action).where(
                    ScopeMapEntry.scope_map_id == scope.id
                )
            ).all()
            entries = [(r, Action(a)) for r, a in rows]
        compiled = compile_entries(entries) if scope is not None else None
        found = explain(compiled, repository, action, state)
        matched = {m.pattern for m in found.matched}
        by_pattern: dict[str, set[Action]] = {}
        for pattern, act in entries:
            by_pattern.setdefault(pattern, set()).add(act)
        table = tuple(
            RuleView(p, tuple(sort_actions(a)), p in matched, p in matched and action in a)
            for p, a in sorted(by_pattern.items())
        )
        return AccessView(
            repository=repository,
            action=action.value,
            allowed=found.allowed,
            token=token.name if token else None,
            token_status=token.status if token else None,
            disable_at=token.disable_at if token else None,
            passwords=tuple(PasswordStateView(p.name, p.expiry, p.live) for p in state.passwords)
            if state
            else (),
            scope_map=scope.name if scope else None,
            scope_map_type=scope.type if scope else None,
            granted=tuple(sort_actions(found.granted)),
            matched=tuple(
                RuleView(m.pattern, tuple(m.actions), True, m.grants) for m in found.matched
            ),
            rules=table,
            reasons=tuple(
                DenialView(r.value, _say(r, found, token, state, scope))
                for r in found.denied_because
            ),
        )


def _say(
    reason: Reason,
    found: Explanation,
    token: Token | None,
    state: TokenState | None,
    scope: ScopeMap | None,
) -> str:
    """A denial in plain words."""
    who = f"token {token.name!r}" if token else "the token"
    where = f"scope map {scope.name!r}" if scope else "its scope map"
    if reason is Reason.TOKEN_DISABLED:
        return f"{who} is disabled: it is denied everything, whatever its scope map grants"
    if reason is Reason.NO_LIVE_PASSWORD:
        held = {p.name: p for p in state.passwords} if state else {}
        parts = [
            f"{slot} expired at {_when(held[slot].expiry)}" if slot in held else f"no {slot}"
            for slot in SLOTS
        ]
        return (
            f"{who} has no password that can sign in ({', '.join(parts)}): it is denied "
            "everything until a password is generated"
        )
    if reason is Reason.NO_SCOPE_MAP:
        return f"{who} has no scope map (its map was deleted): it has no permissions"
    if reason is Reason.NO_RULE_MATCHED:
        return f"no rule of {where} matches repository {found.repository!r}"
    if reason is Reason.ACTION_NOT_GRANTED:
        granted = ", ".join(sort_actions(found.granted))
        if len(found.matched) == 1:
            return (
                f"the one rule of {where} that matches {found.repository!r} "
                f"({found.matched[0].pattern}) does not grant {found.action.value}; "
                f"it grants {granted}"
            )
        return (
            f"{len(found.matched)} rules of {where} match {found.repository!r}, but none grants "
            f"{found.action.value}; together they grant {granted}"
        )
    return f"{found.repository!r} is not a valid repository name"
