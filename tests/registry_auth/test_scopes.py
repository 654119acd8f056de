from __future__ import annotations

import pytest

from fleet.domain.errors import ValidationError
from fleet.registry_auth.scopes import (
    MAX_SCOPE_LENGTH,
    Scope,
    is_valid_repository_name,
    parse_scope,
    parse_scopes,
)

VALID = [
    (
        "repository:samples/hello-world:pull,push",
        Scope("repository", "samples/hello-world", ("pull", "push")),
    ),
    ("repository:hello:pull", Scope("repository", "hello", ("pull",))),
    ("repository:a/b/c.d_e-f:*", Scope("repository", "a/b/c.d_e-f", ("*",))),
    (
        "repository(plugin):vieux/sshfs:pull",
        Scope("repository", "vieux/sshfs", ("pull",), resource_class="plugin"),
    ),
    ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
    (
        "repository:samples/x:metadata_read,metadata_write",
        Scope("repository", "samples/x", ("metadata_read", "metadata_write")),
    ),
    ("repository:samples/x:pull,pull,push", Scope("repository", "samples/x", ("pull", "push"))),
    # The name may hold ':' (host:port): type before the first ':', actions after the last.
    ("registry:localhost:5000:pull", Scope("registry", "localhost:5000", ("pull",))),
    ("repository:samples/x:delete", Scope("repository", "samples/x", ("delete",))),
]

INVALID = [
    ("", "expected TYPE:NAME:ACTIONS"),
    ("repository", "expected TYPE:NAME:ACTIONS"),
    ("repository:samples/x", "expected TYPE:NAME:ACTIONS"),
    ("repository::pull", "resource name is empty"),
    ("repository:samples/x:", "no actions given"),
    ("repository:samples/x:pull,", "action ''"),
    ("repository:samples/x:Pull", "action 'Pull'"),
    ("repository:samples/x:pull push", "action 'pull push'"),
    ("Repository:samples/x:pull", "resource type 'Repository'"),
    ("repository(:samples/x:pull", "resource type 'repository('"),
    ("repository(plugin:samples/x:pull", "resource type"),
    ("repository:Samples/X:pull", "repository name 'Samples/X'"),
    ("repository:samples//x:pull", "repository name"),
    ("repository:samples/x/:pull", "repository name"),
    ("repository:/samples:pull", "repository name"),
    ("repository:samples/-x:pull", "repository name"),
    ("repository:.*:pull", "repository name '.*'"),
    ("repository:localhost:5000/samples:pull", "repository name 'localhost:5000/samples'"),
    ("repository:" + "a" * 256 + ":pull", "at most 255"),
]


@pytest.mark.parametrize(("value", "expected"), VALID)
def test_parses_valid_scopes(value: str, expected: Scope) -> None:
    assert parse_scope(value) == expected


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_rejects_malformed_scopes_saying_why(value: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_scope(value)
    assert caught.value.code == "InvalidScope"
    assert reason in caught.value.message


def test_overlong_scope_is_refused_without_echoing_it() -> None:
    value = "repository:" + "a/" * MAX_SCOPE_LENGTH + "a:pull"
    with pytest.raises(ValidationError) as caught:
        parse_scope(value)
    assert str(MAX_SCOPE_LENGTH) in caught.value.message
    assert value not in caught.value.message


def test_scope_prints_back_as_its_string() -> None:
    for value, _ in VALID[:5]:
        assert str(parse_scope(value)) == value


def test_parse_scopes_splits_space_separated_values_and_keeps_order() -> None:
    scopes = parse_scopes(["repository:a:pull repository:b:pull,push", "registry:catalog:*"])
    assert [(s.type, s.name) for s in scopes] == [
        ("repository", "a"),
        ("repository", "b"),
        ("registry", "catalog"),
    ]
    assert parse_scopes([]) == []


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("hello-world", True),
        ("samples/hello-world", True),
        ("a/b/c/d", True),
        ("a.b_c-d/e", True),
        # Distribution also accepts "__" and "--" separators; the brief's stricter grammar does not.
        ("a__b", False),
        ("a--b", False),
        ("a1/2b", True),
        ("a" * 255, True),
        ("a" * 256, False),
        ("", False),
        ("UPPER", False),
        ("trailing/", False),
        ("-leading", False),
        ("a..b", False),
        ("host:5000/a", False),
        ("*", False),
    ],
)
def test_repository_names_follow_the_oci_grammar(name: str, valid: bool) -> None:
    assert is_valid_repository_name(name) is valid
