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


# Known answers computed outside fleet: `printf '%s' INPUT | openssl dgst -sha256 -mac HMAC
# -macopt key:kkkk...` (32 x "k"), and the CRC32 from `gzip -c | tail -c8` turned into base62 by
# hand (442858466 = 0*62^5 + 29*62^4 + 60*62^3 + 11*62^2 + 44*62 + 30 -> "0TyBiU").
KNOWN_KEY = b"k" * 32
KNOWN_BODY = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
KNOWN_SECRET = f"fltp_{KNOWN_BODY}"
KNOWN_SECRET_HMAC = "cf4c46234da69a95bed8a174701078268ad86df1b5f2d0abbbb4c6bd0becca75"
EMPTY_HMAC = "a4ad8e340e32bf1d916005cb1dc92795148897965e36ae56c0adc357474b5372"
KNOWN_CHECKSUM = "0TyBiU"


@pytest.mark.parametrize(
    ("secret", "expected"), [(KNOWN_SECRET, KNOWN_SECRET_HMAC), ("", EMPTY_HMAC)]
)
def test_keyed_hash_known_answers(secret: str, expected: str) -> None:
    hasher = SecretHasher(KNOWN_KEY)
    assert hasher.hash(secret) == expected
    assert hasher.matches(secret, expected)


def test_checksum_known_answer() -> None:
    valid = f"{PASSWORD_PREFIX}{KNOWN_BODY}{KNOWN_CHECKSUM}"
    assert looks_valid(valid, PASSWORD_PREFIX)
    assert not looks_valid(f"{PASSWORD_PREFIX}{KNOWN_BODY}0TyBiV", PASSWORD_PREFIX)
