"""The reference's "Examples: Use token", for real: fleet CLI, fleet serve, Distribution, skopeo.

Each step is the reference's, with ``az acr`` replaced by ``fleet`` and ``docker`` by ``skopeo``.
Tokens and repositories are named per test, so the tests share one server and one registry.
Repository names are lowercase (OCI names): the reference's ``sample/teamA/projectB`` is
``sample/teama/projectb`` here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.e2e.stack import (
    HTTP_TIMEOUT_S,
    Stack,
    creds_with,
    decode,
    delete_refused,
    denied,
    ok,
    unauthorized,
)
from tests.support import skopeo
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

HELLO = "samples/hello-world"
NGINX = "samples/nginx"
# How far ahead an expiring password is set, before scaling: room for one CLI call and one pull.
# A pull refused only once the expiry had passed proves nothing, so the test tries again with
# twice the room, up to EXPIRY_ATTEMPTS times.
EXPIRY_AHEAD_S = 4.0
EXPIRY_ATTEMPTS = 3


def test_use_token_examples(stack: Stack) -> None:
    # Create token and specify repositories.
    creds = stack.create_token("MyToken", [HELLO, "content/write", "content/read"])

    # Push images to registry: hello-world is allowed, nginx is not.
    ok(stack.push(HELLO, creds))
    denied(stack.push(NGINX, creds))

    # Update token permissions: every token using the map changes at once.
    stack.fleet(
        "scope-map", "update", "--name", "MyToken-scope-map", "--registry", "myregistry",
        "--add-repository", NGINX, "content/write", "content/read",
        "--remove-repository", HELLO, "content/write",
    )  # fmt: skip
    ok(stack.push(NGINX, creds))
    denied(stack.push(HELLO, creds, tag="v2"))
    ok(stack.pull(NGINX, creds))
    ok(stack.pull(HELLO, creds))

    # Delete images: content/delete on nginx lets the token delete its manifest.
    assert stack.granted(creds, f"repository:{NGINX}:delete") == {}
    stack.fleet(
        "scope-map", "update", "--name", "MyToken-scope-map", "--registry", "myregistry",
        "--add-repository", NGINX, "content/delete",
    )  # fmt: skip
    ok(stack.delete(NGINX, creds))
    gone = stack.pull(NGINX, creds)
    assert not gone.ok and "manifest unknown" in gone.stderr, gone.output
    delete_refused(stack.delete(HELLO, creds))  # no content/delete on hello-world
    ok(stack.pull(HELLO, creds))

    # Show repo tags: with metadata/read added on hello-world, its tags are listed.
    metadata_scope = f"repository:{HELLO}:metadata_read"
    assert stack.granted(creds, metadata_scope) == {}
    stack.fleet(
        "scope-map", "update", "--name", "MyToken-scope-map", "--registry", "myregistry",
        "--add-repository", HELLO, "metadata/read",
    )  # fmt: skip
    assert stack.granted(creds, metadata_scope) == {HELLO: ["metadata_read"]}
    tags = stack.list_tags(HELLO, creds)
    ok(tags)
    assert skopeo.tags_of(tags) == ["v1"]


def test_metadata_read_alone_never_becomes_pull(stack: Stack) -> None:
    """Distribution lists tags under ``pull``, which also lets a client fetch every blob. A map
    granting only metadata/read gets ``metadata_read`` in its JWT, never ``pull``: listing tags
    (ACR's show-tags) needs content/read as well on this registry."""
    creds = stack.given_token("MetadataOnly", HELLO, "metadata/read")
    scope = f"repository:{HELLO}:pull,metadata_read"
    assert stack.granted(creds, scope) == {HELLO: ["metadata_read"]}
    denied(stack.list_tags(HELLO, creds))
    denied(stack.pull(HELLO, creds))


def test_wildcard_rules_add_up_in_the_jwt_and_at_the_registry(stack: Stack) -> None:
    stack.fleet(
        "scope-map", "create", "--name", "MyScopeMapWildcard", "--registry", "myregistry",
        "--repository", "sample/*", "content/read",
        "--repository", "sample/teama/*", "content/write",
        "--repository", "sample/teama/projectb", "content/delete",
        "--description", "Sample scope map with wildcards",
    )  # fmt: skip
    creds = stack.create_token("MyTokenWildcard", scope_map="MyScopeMapWildcard")
    everything = "pull,push,delete"
    asked = [
        f"repository:{name}:{everything}"
        for name in (
            "sample/teama/projectb",
            "sample/teama/projectc",
            "sample/teama/deeper/project",
            "sample/teamb/projectd",
            "sample",  # the prefix itself is not below it
            "sample-other/x",  # nor is a sibling that shares its letters
            "samples/hello-world",
        )
    ]
    assert stack.granted(creds, *asked) == {
        "sample/teama/projectb": ["pull", "push", "delete"],
        "sample/teama/projectc": ["pull", "push"],
        "sample/teama/deeper/project": ["pull", "push"],
        "sample/teamb/projectd": ["pull"],
    }

    # The same grants at the registry, on repositories that did not exist before the push.
    ok(stack.push("sample/teama/projectb", creds))
    ok(stack.push("sample/teama/projectc", creds))
    ok(stack.push("sample/teama/deeper/project", creds))
    denied(stack.push("sample/teamb/projectd", creds))
    ok(stack.pull("sample/teama/projectc", creds))
    delete_refused(stack.delete("sample/teama/projectc", creds))
    ok(stack.delete("sample/teama/projectb", creds))


def test_root_wildcard_reaches_every_repository(stack: Stack) -> None:
    creds = stack.create_token("MyTokenRoot", ["*", "content/write", "content/read"])
    for repository in ("rootcheck", "rootcheck/a/b/c", "another/team/image"):
        ok(stack.push(repository, creds))
        ok(stack.pull(repository, creds))
    assert stack.granted(creds, "repository:any/thing:pull,push,delete") == {
        "any/thing": ["pull", "push"]
    }
    delete_refused(stack.delete("rootcheck", creds))


def test_disabled_token_fails_and_works_again_when_enabled(stack: Stack) -> None:
    creds = stack.given_token("StatusToken", "status/app", "content/write", "content/read")
    ok(stack.push("status/app", creds))

    stack.fleet("token", "update", "--name", "StatusToken", "--status", "disabled")
    unauthorized(stack.pull("status/app", creds))
    answer = stack.ask_token(creds, "repository:status/app:pull")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")

    stack.fleet("token", "update", "--name", "StatusToken", "--status", "enabled")
    ok(stack.pull("status/app", creds))


def test_regenerated_password_works_at_once_and_the_replaced_one_stops(stack: Stack) -> None:
    rules = [{"repository": "regen/app", "actions": ["content/write", "content/read"]}]
    made = stack.api("POST", "/tokens", {"name": "RegenToken", "repositories": rules})
    old1, old2 = (p["value"] for p in made["credentials"]["passwords"])
    ok(stack.push("regen/app", f"RegenToken:{old1}"))

    new1 = stack.fleet(
        "token", "credential", "generate", "--name", "RegenToken", "--password1",
        "--query", "passwords[0]",
    )  # fmt: skip
    assert new1["name"] == "password1"
    ok(stack.pull("regen/app", f"RegenToken:{new1['value']}"))
    unauthorized(stack.pull("regen/app", f"RegenToken:{old1}"))
    ok(stack.pull("regen/app", f"RegenToken:{old2}"))  # the other slot is untouched


def test_expired_password_fails(stack: Stack) -> None:
    creds = stack.given_token("ExpiringToken", "expiring/app", "content/write", "content/read")
    ok(stack.push("expiring/app", creds))
    ahead = scaled(EXPIRY_AHEAD_S)
    for _ in range(EXPIRY_ATTEMPTS):
        expiry = datetime.now(UTC) + timedelta(seconds=ahead)
        generated = stack.fleet(
            "token", "credential", "generate", "--name", "ExpiringToken", "--password1",
            "--expiration", expiry.isoformat(),
        )  # fmt: skip
        expiring = creds_with(creds, generated["passwords"][0]["value"])
        assert datetime.fromisoformat(generated["passwords"][0]["expiry"]) == expiry
        before = stack.pull("expiring/app", expiring)
        if before.ok:
            break
        # Refused: a failure unless the CLI call and the pull ran past the expiry.
        assert datetime.now(UTC) >= expiry, before.output
        ahead *= 2
    else:
        raise AssertionError(f"no pull finished within {ahead / 2:g} s of generating a password")

    longest = EXPIRY_AHEAD_S * 2**EXPIRY_ATTEMPTS  # unscaled, as wait_until takes it
    wait_until(lambda: datetime.now(UTC) > expiry, "the password's expiry", timeout=longest)
    unauthorized(stack.pull("expiring/app", expiring))
    assert stack.ask_token(expiring, "repository:expiring/app:pull").status_code == 401


def test_deleted_token_fails(stack: Stack) -> None:
    creds = stack.given_token("DoomedToken", "doomed/app", "content/write", "content/read")
    ok(stack.push("doomed/app", creds))
    stack.fleet("token", "delete", "--name", "DoomedToken", "--yes")
    unauthorized(stack.pull("doomed/app", creds))
    assert stack.ask_token(creds, "repository:doomed/app:pull").status_code == 401
    # A name that never existed is refused the same way.
    unauthorized(stack.pull("doomed/app", f"NoSuchToken:{creds.partition(':')[2]}"))


def test_catalog_is_refused_even_to_the_admin_scope_map(stack: Stack) -> None:
    made = stack.api("POST", "/tokens", {"name": "CatalogToken", "scopeMap": "_repositories_admin"})
    creds = f"CatalogToken:{made['credentials']['passwords'][0]['value']}"
    catalog = f"{stack.registry.url}/v2/_catalog"
    challenge = requests.get(catalog, timeout=HTTP_TIMEOUT_S)
    assert challenge.status_code == 401
    assert 'scope="registry:catalog:*"' in challenge.headers["WWW-Authenticate"]

    answer = stack.ask_token(creds, "registry:catalog:*")
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["token"])["access"] == []
    refused = requests.get(
        catalog,
        headers={"Authorization": f"Bearer {answer.json()['token']}"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
