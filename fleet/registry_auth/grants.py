"""What a token may do with a requested scope, in the registry's own action names.

The registry speaks ``pull``/``push``/``delete`` (and ACR adds ``metadata_read`` and
``metadata_write``); scope maps speak ACR's ``content/read`` and friends. Asking for more than
is allowed is not an error: the client gets the allowed subset, possibly nothing, and the registry
answers "requested access to the resource is denied". No non-repository resource (the catalog
above all) is ever granted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from fleet.domain.actions import ALL_ACTIONS, Action
from fleet.registry_auth.scopes import REPOSITORY, WILDCARD_ACTION, Scope

ACTION_FOR_REGISTRY_ACTION: Mapping[str, Action] = MappingProxyType(
    {
        "pull": Action.CONTENT_READ,
        "push": Action.CONTENT_WRITE,
        "delete": Action.CONTENT_DELETE,
        "metadata_read": Action.METADATA_READ,
        "metadata_write": Action.METADATA_WRITE,
    }
)

AccessEntry = dict[str, object]
Policy = Callable[[str], frozenset[Action]]


def _permits(requested: str, allowed: frozenset[Action]) -> bool:
    if requested == WILDCARD_ACTION:
        return allowed >= ALL_ACTIONS
    needed = ACTION_FOR_REGISTRY_ACTION.get(requested)
    return needed is not None and needed in allowed


def granted_actions(scope: Scope, allowed: frozenset[Action]) -> list[str]:
    """The requested registry actions that ``allowed`` permits, in the order requested."""
    if scope.type != REPOSITORY:
        return []
    return [action for action in scope.actions if _permits(action, allowed)]


def access_entry(scope: Scope, actions: list[str]) -> AccessEntry:
    """One element of the JWT ``access`` claim, as Distribution reads it."""
    entry: AccessEntry = {"type": scope.type, "name": scope.name, "actions": actions}
    if scope.resource_class:
        entry["class"] = scope.resource_class
    return entry


def access_claim(scopes: Iterable[Scope], policy: Policy) -> list[AccessEntry]:
    """The ``access`` claim for ``scopes``: ``policy(repository)`` gives the allowed actions.

    Repeated scopes for one resource are merged; resources with nothing granted are left out,
    and ``policy`` is never asked about a non-repository resource.
    """
    merged: dict[tuple[str, str], tuple[Scope, list[str]]] = {}
    for scope in scopes:
        if scope.type != REPOSITORY:
            continue
        granted = granted_actions(scope, policy(scope.name))
        _, actions = merged.setdefault((scope.type, scope.name), (scope, []))
        actions.extend(a for a in granted if a not in actions)
    return [access_entry(scope, actions) for scope, actions in merged.values() if actions]
