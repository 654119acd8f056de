"""What enters and leaves the REST API. JSON is camelCase, shaped like the reference's output."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel

from fleet.api.paging import NEXT_CURSOR
from fleet.domain.times import MAX_AHEAD_DAYS

Slot = Literal["password1", "password2"]
Status = Literal["enabled", "disabled"]
MAX_EXPIRATION_DAYS = MAX_AHEAD_DAYS


def _utc_instant(value: datetime) -> datetime:
    """A time that enters the API names its zone; it is kept as that instant, in UTC."""
    if value.tzinfo is None:
        raise ValueError(
            "give a time zone, for example 2027-01-31T00:00:00Z (a time without one is refused, "
            "never guessed)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


# Every time field of a request body: ISO 8601 with a zone, answered back in UTC. How far ahead
# it may lie (MAX_EXPIRATION_DAYS) is checked by the service, which owns the clock.
Instant = Annotated[
    datetime,
    AfterValidator(_utc_instant),
    Field(
        description=f"ISO 8601 with a time zone, at most {MAX_AHEAD_DAYS} days ahead; "
        "answered in UTC"
    ),
]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def view_model(
    name: str,
    view: type[Any],
    *,
    base: type[ApiModel] = ApiModel,
    module: str = __name__,
    exclude: Collection[str] = (),
    replace: Mapping[str, tuple[Any, Any]] | None = None,
) -> type[ApiModel]:
    """A response model whose fields are those of the service's view dataclass, in its order,
    with its types and defaults: the fields are defined once, in the view. ``exclude`` leaves
    fields out (those ``base`` shapes itself); ``replace`` gives a field another
    ``(type, default or Field(...))``, for a nested view's model or a description."""
    hints = get_type_hints(view)
    replace = replace or {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(view):
        if f.name in exclude:
            continue
        if f.name in replace:
            fields[f.name] = replace[f.name]
        else:
            default = ... if f.default is dataclasses.MISSING else f.default
            fields[f.name] = (hints[f.name], default)
    unknown = (set(exclude) | set(replace)) - {f.name for f in dataclasses.fields(view)}
    if unknown:
        raise TypeError(f"{view.__name__} has no fields {sorted(unknown)}")
    return create_model(name, __base__=base, __module__=module, **fields)


class RepositoryRule(ApiModel):
    """One rule: a repository (exact, ``prefix/*`` or ``*``) and the actions it grants."""

    repository: str
    actions: list[str] = Field(min_length=1)


class Expiring(ApiModel):
    expiry: Instant | None = Field(
        default=None, description="Absolute expiry (ISO 8601 with a time zone)"
    )
    expiration_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRATION_DAYS)


class TokenCreate(Expiring):
    name: str
    scope_map: str | None = None
    repositories: list[RepositoryRule] = Field(default_factory=list)
    status: Status = "enabled"
    no_passwords: bool = False


class TokenUpdate(ApiModel):
    scope_map: str | None = None
    status: Status | None = None
    disable_at: Instant | None = Field(
        default=None, description="Planned disable (ISO 8601); null cancels a planned disable"
    )


class CredentialGenerate(Expiring):
    passwords: list[Slot] = Field(min_length=1, max_length=2)


class ScopeMapCreate(ApiModel):
    name: str
    repositories: list[RepositoryRule] = Field(default_factory=list)
    description: str = ""


class ScopeMapUpdate(ApiModel):
    add_repositories: list[RepositoryRule] = Field(default_factory=list)
    remove_repositories: list[RepositoryRule] = Field(default_factory=list)
    description: str | None = None


# -- responses ---------------------------------------------------------------------------
class PasswordOut(ApiModel):
    creation_time: datetime
    expiry: datetime | None
    name: Slot
    value: str | None = Field(default=None, description="Present only in the generating answer")


class CredentialsOut(ApiModel):
    passwords: list[PasswordOut]
    username: str


class TokenCredentialsOut(CredentialsOut):
    certificates: list[str]


class LoginSeenOut(ApiModel):
    at: datetime
    address: str


class TokenHealthOut(ApiModel):
    """Registry logins with this token, at most a few seconds behind (written in batches)."""

    last_used: LoginSeenOut | None
    failed_logins: int
    last_failed: LoginSeenOut | None


class AccessEndOut(ApiModel):
    """When the registry stops accepting JWTs issued before a disable, a delete or a password
    removal: at most their lifetime plus the registry's 60 s leeway after it. Null until one
    of those happened (and for a token disabled before these times were kept)."""

    registry_access_ends_by: datetime | None = None
    registry_access_ended: bool | None = Field(
        default=None, description="True once registryAccessEndsBy has passed"
    )


class TokenOut(AccessEndOut):
    creation_date: datetime
    credentials: TokenCredentialsOut
    disable_at: datetime | None = None
    id: str
    name: str
    object_id: None = None
    provisioning_state: str
    registry: str
    scope_map_id: str | None
    status: Status
    type: str
    health: TokenHealthOut | None = Field(
        default=None, description="Shown by 'show a token' (GET /tokens/{name}) only"
    )


class TokenList(ApiModel):
    value: list[TokenOut]
    next_cursor: str | None = NEXT_CURSOR


class ScopeMapOut(ApiModel):
    actions: list[str]
    creation_date: datetime
    description: str
    id: str
    name: str
    provisioning_state: str
    registry: str
    scope_map_type: Literal["UserDefined", "SystemDefined"]
    type: str


class ScopeMapList(ApiModel):
    value: list[ScopeMapOut]
    next_cursor: str | None = NEXT_CURSOR


class ScopeMapTokens(ApiModel):
    tokens: list[str]
    next_cursor: str | None = NEXT_CURSOR


class ScopeMapDeleted(ApiModel):
    tokens_without_permissions: list[str]


class PasswordStateOut(ApiModel):
    name: Slot
    expiry: datetime | None
    live: bool = Field(description="Whether it signs in now (token enabled, not expired)")


class AccessTokenOut(ApiModel):
    name: str
    status: Status
    disable_at: datetime | None
    passwords: list[PasswordStateOut]


class AccessScopeMapOut(ApiModel):
    name: str
    type: Literal["UserDefined", "SystemDefined"]


class MatchedRuleOut(ApiModel):
    repository: str = Field(description="The rule's pattern: exact, prefix/* or *")
    actions: list[str]
    grants_action: bool = Field(description="Whether this rule holds the action asked about")


class DenialOut(ApiModel):
    code: Literal[
        "TokenDisabled",
        "NoLivePassword",
        "NoScopeMap",
        "InvalidRepository",
        "NoRuleMatched",
        "ActionNotGranted",
    ]
    message: str


class AccessOut(ApiModel):
    """The access explainer's answer: the token endpoint's decision and the rules behind it."""

    repository: str
    action: str
    decision: Literal["allowed", "denied"]
    allowed: bool
    token: AccessTokenOut | None = Field(description="Null when a scope map was asked about")
    scope_map: AccessScopeMapOut | None = Field(description="Null for a token without one")
    granted_actions: list[str] = Field(
        description="Every action the matching rules grant on the repository"
    )
    matched_rules: list[MatchedRuleOut] = Field(description="Broadest first")
    reasons: list[DenialOut] = Field(description="Why it is denied; empty when allowed")
