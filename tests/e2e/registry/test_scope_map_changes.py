"""Scope-map changes reach every gunicorn worker at once, whatever each one has cached.

The reference's "Update token with new scope map" and "Delete a scope map", against the real
server: each worker caches compiled scope maps, so these tests first make both workers cache the
old rules, then change them, then ask again many times.
"""

from __future__ import annotations

import pytest

from tests.e2e.stack import ASKS_PER_WORKER_SPREAD, Stack, denied, ok

pytestmark = pytest.mark.e2e

OLD = "swap/old"
NEW = "swap/new"
BOTH = (f"repository:{OLD}:pull,push", f"repository:{NEW}:pull,push")


def _every_answer(stack: Stack, creds: str) -> list[dict[str, list[str]]]:
    return [stack.granted(creds, *BOTH) for _ in range(ASKS_PER_WORKER_SPREAD)]


def test_token_moved_to_a_new_scope_map_after_the_old_one_was_deleted(stack: Stack) -> None:
    rules = [{"repository": OLD, "actions": ["content/read", "content/write"]}]
    stack.api("POST", "/scope-maps", {"name": "OldScopeMap", "repositories": rules})
    made = stack.api("POST", "/tokens", {"name": "MovingToken", "scopeMap": "OldScopeMap"})
    creds = f"MovingToken:{made['credentials']['passwords'][0]['value']}"
    assert _every_answer(stack, creds) == [{OLD: ["pull", "push"]}] * ASKS_PER_WORKER_SPREAD
    ok(stack.push(OLD, creds))

    # "Tokens that use it are left with no permissions."
    stack.fleet("scope-map", "delete", "--name", "OldScopeMap", "--yes")
    assert _every_answer(stack, creds) == [{}] * ASKS_PER_WORKER_SPREAD

    # On SQLite the new map may get the deleted one's id, with revision 1 again: a cache keyed
    # on (id, revision) alone would hand the token the old rules.
    stack.fleet(
        "scope-map", "create", "--name", "MyNewScopeMap", "--repository", NEW, "content/read",
    )  # fmt: skip
    stack.fleet("token", "update", "--name", "MovingToken", "--scope-map", "MyNewScopeMap")
    assert _every_answer(stack, creds) == [{NEW: ["pull"]}] * ASKS_PER_WORKER_SPREAD
    denied(stack.push(OLD, creds, tag="v2"))
