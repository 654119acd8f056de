import pytest

from fleet.domain.errors import ValidationError
from fleet.domain.names import is_valid_repository, validate_resource_name

REPOSITORIES = [
    ("samples/hello-world", True),
    ("a", True),
    ("a/b/c/d/e", True),
    ("a.b", True),
    ("a__b", False),  # the issue fixes the separators to one of . _ - between components
    ("a_b", True),
    ("a-b", True),
    ("a--b", False),
    ("A", False),
    ("a/", False),
    ("a//b", False),
    ("a b", False),
    ("a" * 255, True),
    ("a" * 256, False),
]


@pytest.mark.parametrize(("name", "valid"), REPOSITORIES)
def test_repository_names(name: str, valid: bool) -> None:
    assert is_valid_repository(name) is valid


@pytest.mark.parametrize("name", ["MyToken", "abcde", "a" * 50, "my-token-1"])
def test_valid_resource_names(name: str) -> None:
    assert validate_resource_name(name, "token") == name


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("abcd", "InvalidName"),
        ("a" * 51, "InvalidName"),
        ("my_token", "InvalidName"),
        ("my token", "InvalidName"),
        ("_repositories_pull", "ReservedName"),
        ("_abcde", "ReservedName"),
        ("", "InvalidName"),
    ],
)
def test_invalid_resource_names(name: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_resource_name(name, "token")
    assert info.value.code == code
