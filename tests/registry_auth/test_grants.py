from __future__ import annotations

import pytest

from fleet.domain.actions import ALL_ACTIONS, READ_ONLY_ACTIONS, Action
from fleet.registry_auth.grants import access_claim, access_entry, granted_actions
from fleet.registry_auth.scopes import Scope, parse_scope

READ = frozenset({Action.CONTENT_READ})
PUSH = frozenset({Action.CONTENT_READ, Action.CONTENT_WRITE})
WRITE_ONLY = frozenset({Action.CONTENT_WRITE})
DELETE = frozenset({Action.CONTENT_DELETE})
NOTHING: frozenset[Action] = frozenset()
ALL_BUT_DELETE = ALL_ACTIONS - {Action.CONTENT_DELETE}

GRANTS = [
    ("repository:a:pull", READ, ["pull"]),
    ("repository:a:pull,push", READ, ["pull"]),
    ("repository:a:pull,push", PUSH, ["pull", "push"]),
    ("repository:a:push,pull", PUSH, ["push", "pull"]),
    ("repository:a:pull,push", WRITE_ONLY, ["push"]),
    ("repository:a:pull,push", NOTHING, []),
    ("repository:a:delete", DELETE, ["delete"]),
    ("repository:a:delete", ALL_BUT_DELETE, []),
    ("repository:a:metadata_read", READ_ONLY_ACTIONS, ["metadata_read"]),
    ("repository:a:metadata_write", frozenset({Action.METADATA_WRITE}), ["metadata_write"]),
    ("repository:a:metadata_write", READ_ONLY_ACTIONS, []),
    ("repository:a:*", ALL_ACTIONS, ["*"]),
    ("repository:a:*", ALL_BUT_DELETE, []),
    ("repository:a:*,pull", PUSH, ["pull"]),
    (
        "repository:a:pull,push,delete,metadata_read,metadata_write",
        ALL_ACTIONS,
        ["pull", "push", "delete", "metadata_read", "metadata_write"],
    ),
    ("repository:a:unknown,pull", ALL_ACTIONS, ["pull"]),
    ("repository(plugin):a:pull", READ, ["pull"]),
    # No token ever gets the catalog, nor any other non-repository resource.
    ("registry:catalog:*", ALL_ACTIONS, []),
    ("registry:catalog:pull", ALL_ACTIONS, []),
    ("other:a:pull", ALL_ACTIONS, []),
]


@pytest.mark.parametrize(("scope", "allowed", "expected"), GRANTS)
def test_grants_the_allowed_subset_of_what_was_asked(
    scope: str, allowed: frozenset[Action], expected: list[str]
) -> None:
    assert granted_actions(parse_scope(scope), allowed) == expected


def test_access_entry_carries_the_class_only_when_there_is_one() -> None:
    plain = Scope("repository", "a", ("pull",))
    plugin = Scope("repository", "a", ("pull",), resource_class="plugin")
    assert access_entry(plain, ["pull"]) == {"type": "repository", "name": "a", "actions": ["pull"]}
    assert access_entry(plugin, ["pull"])["class"] == "plugin"


def test_access_claim_merges_repeats_drops_empty_and_never_asks_about_the_catalog() -> None:
    asked: list[str] = []
    policy = {"samples/hello-world": PUSH, "samples/nginx": READ}

    def allowed(repository: str) -> frozenset[Action]:
        asked.append(repository)
        return policy.get(repository, NOTHING)

    scopes = [
        parse_scope("repository:samples/nginx:pull,push"),
        parse_scope("registry:catalog:*"),
        parse_scope("repository:samples/hello-world:pull"),
        parse_scope("repository:samples/hello-world:push,pull"),
        parse_scope("repository:samples/secret:pull"),
    ]
    assert access_claim(scopes, allowed) == [
        {"type": "repository", "name": "samples/nginx", "actions": ["pull"]},
        {"type": "repository", "name": "samples/hello-world", "actions": ["pull", "push"]},
    ]
    assert "catalog" not in asked
