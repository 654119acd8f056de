"""Names: OCI repository names, and the names of tokens and scope maps."""

from __future__ import annotations

import re

from fleet.domain.errors import ValidationError

MAX_REPOSITORY_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_RESOURCE_NAME_RE = re.compile(r"[A-Za-z0-9-]{5,50}")
RESERVED_PREFIX = "_"


def is_valid_repository(name: str) -> bool:
    return len(name) <= MAX_REPOSITORY_LENGTH and _REPOSITORY_RE.fullmatch(name) is not None


def is_valid_rule_repository(name: str) -> bool:
    """A rule's repository: an OCI name once lowercased (rules keep the operator's capitals)."""
    return name.isascii() and is_valid_repository(name.lower())


def validate_repository(name: str) -> str:
    if not is_valid_repository(name):
        raise ValidationError(
            f"invalid repository name {name!r}: use lowercase letters and digits, "
            "separated by '.', '_' or '-' within a component and '/' between components, "
            f"at most {MAX_REPOSITORY_LENGTH} characters",
            code="InvalidRepositoryName",
        )
    return name


def validate_resource_name(name: str, kind: str) -> str:
    """Token and scope-map names: letters, digits and hyphens, 5 to 50 characters.

    Names starting with ``_`` are reserved for system-defined scope maps.
    """
    if name.startswith(RESERVED_PREFIX):
        raise ValidationError(
            f"{kind} name {name!r} is reserved: names starting with '_' belong to the system",
            code="ReservedName",
        )
    if _RESOURCE_NAME_RE.fullmatch(name) is None:
        raise ValidationError(
            f"invalid {kind} name {name!r}: use 5 to 50 letters, digits or hyphens",
            code="InvalidName",
        )
    return name


DEVICE_TOKEN_PREFIX = "dev-"


def device_token_name(device_id: str) -> str:
    return DEVICE_TOKEN_PREFIX + device_id
