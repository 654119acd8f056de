"""Scope-map routes: the REST twin of ``az acr scope-map ...``."""

from __future__ import annotations

from typing import Any

from fleet.api.auth import actor, services
from fleet.api.paging import page_args, page_json
from fleet.api.rest import api
from fleet.api.schemas import (
    RepositoryRule,
    ScopeMapCreate,
    ScopeMapDeleted,
    ScopeMapList,
    ScopeMapOut,
    ScopeMapTokens,
    ScopeMapUpdate,
)
from fleet.api.serializers import scope_map_json
from fleet.domain.rules import RepositoryActions

TAG = "scope-maps"


def _registry() -> str:
    return services().ctx.settings.registry_name


def _rules(rules: list[RepositoryRule]) -> list[RepositoryActions]:
    return [RepositoryActions(r.repository, tuple(r.actions)) for r in rules]


@api.operation(
    "/scope-maps",
    "GET",
    summary="List scope maps, system-defined first, then by name",
    tag=TAG,
    response=ScopeMapList,
    paged=True,
)
def list_scope_maps() -> Any:
    registry = _registry()
    found = services().scope_maps.list(**page_args())
    return page_json(found, lambda m: scope_map_json(registry, m))


@api.operation(
    "/scope-maps",
    "POST",
    summary="Create a scope map",
    tag=TAG,
    status=201,
    body=ScopeMapCreate,
    response=ScopeMapOut,
)
def create_scope_map(body: ScopeMapCreate) -> Any:
    created = services().scope_maps.create(
        body.name, _rules(body.repositories), body.description, actor=actor()
    )
    return scope_map_json(_registry(), created), 201


@api.operation(
    "/scope-maps/<name>", "GET", summary="Show a scope map", tag=TAG, response=ScopeMapOut
)
def show_scope_map(name: str) -> Any:
    return scope_map_json(_registry(), services().scope_maps.show(name))


@api.operation(
    "/scope-maps/<name>",
    "PATCH",
    summary="Add or remove rules, change the description",
    tag=TAG,
    body=ScopeMapUpdate,
    response=ScopeMapOut,
)
def update_scope_map(name: str, body: ScopeMapUpdate) -> Any:
    updated = services().scope_maps.update(
        name,
        add=_rules(body.add_repositories),
        remove=_rules(body.remove_repositories),
        description=body.description,
        actor=actor(),
    )
    return scope_map_json(_registry(), updated)


@api.operation(
    "/scope-maps/<name>/tokens",
    "GET",
    summary="Names of the tokens that use a scope map, by name",
    tag=TAG,
    response=ScopeMapTokens,
    paged=True,
)
def scope_map_tokens(name: str) -> Any:
    found = services().scope_maps.tokens_using(name, **page_args())
    return page_json(found, str, field="tokens")


@api.operation(
    "/scope-maps/<name>",
    "DELETE",
    summary=(
        "Delete a scope map; tokens using it are left with no permissions "
        "(409 ScopeMapInUse while a device group uses it)"
    ),
    tag=TAG,
    response=ScopeMapDeleted,
)
def delete_scope_map(name: str) -> Any:
    return {"tokensWithoutPermissions": services().scope_maps.delete(name, actor=actor())}
