import pytest

from fleet.credentials import (
    API_KEY_PREFIX,
    PASSWORD_PREFIX,
    SecretHasher,
    generate_secret,
    looks_valid,
)


def test_generated_secrets_are_prefixed_checksummed_and_distinct() -> None:
    values = {generate_secret(PASSWORD_PREFIX) for _ in range(200)}
    assert len(values) == 200
    for value in values:
        assert value.startswith("fltp_") and len(value) == 47
        assert looks_valid(value, PASSWORD_PREFIX)
        assert not looks_valid(value, API_KEY_PREFIX)


def test_a_typo_fails_the_checksum() -> None:
    value = generate_secret(API_KEY_PREFIX)
    flipped = value[:10] + ("a" if value[10] != "a" else "b") + value[11:]
    assert not looks_valid(flipped, API_KEY_PREFIX)
    assert not looks_valid(value[:-1], API_KEY_PREFIX)


def test_keyed_hash() -> None:
    a, b = SecretHasher(b"k" * 32), SecretHasher(b"j" * 32)
    assert a.hash("x") != b.hash("x")  # the key matters: a stolen table alone is not enough
    assert a.matches("x", a.hash("x")) and not a.matches("y", a.hash("x"))
    with pytest.raises(ValueError):
        SecretHasher(b"short")
