"""Docker token-auth scope strings: ``TYPE[(CLASS)]:NAME:ACTION[,ACTION...]``.

The resource name may itself contain ``:`` (``host:port``), so the type is everything before the
first ``:`` and the actions everything after the last one. Repository names are checked as OCI
names; other resource types (``registry:catalog:*``) are parsed but never granted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fleet.domain.errors import ValidationError

REPOSITORY = "repository"
WILDCARD_ACTION = "*"
SEPARATOR = ":"
ACTION_SEPARATOR = ","
MAX_SCOPE_LENGTH = 1024
# Scope strings repeat: a fleet pulls a few repositories many times. Bounded, and only valid
# scopes are kept (a malformed one raises, which the cache does not remember).
PARSED_SCOPE_CACHE = 4096
MAX_REPOSITORY_NAME_LENGTH = 255
MAX_CLASS_LENGTH = 32  # Docker's classes are words such as "image" and "plugin"
INVALID_SCOPE = "InvalidScope"

_TYPE_RE = re.compile(r"(?P<type>[a-z0-9]+)(?:\((?P<class>[a-z0-9]+)\))?")
_ACTION_RE = re.compile(r"[a-z][a-z_]*|\*")
_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


def is_valid_repository_name(name: str) -> bool:
    """An OCI repository name: lowercase components joined by ``/``, at most 255 characters."""
    return len(name) <= MAX_REPOSITORY_NAME_LENGTH and bool(_REPOSITORY_NAME_RE.fullmatch(name))


@dataclass(frozen=True)
class Scope:
    """One requested resource and the actions asked for it, in the order asked, without repeats.

    ``resource_class`` holds the optional class of ``repository(plugin):...``; the registry
    matches access on type and name only.
    """

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str = ""

    def __str__(self) -> str:
        kind = f"{self.type}({self.resource_class})" if self.resource_class else self.type
        return SEPARATOR.join((kind, self.name, ACTION_SEPARATOR.join(self.actions)))


def _invalid(scope: str, reason: str) -> ValidationError:
    return ValidationError(f"invalid scope {scope!r}: {reason}", code=INVALID_SCOPE)


@functools.lru_cache(maxsize=PARSED_SCOPE_CACHE)
def parse_scope(value: str) -> Scope:
    """Parse one scope, or raise :class:`ValidationError` (code ``InvalidScope``) saying why."""
    if len(value) > MAX_SCOPE_LENGTH:
        raise ValidationError(
            f"invalid scope: longer than {MAX_SCOPE_LENGTH} characters", code=INVALID_SCOPE
        )
    kind, sep, rest = value.partition(SEPARATOR)
    name, sep_last, action_list = rest.rpartition(SEPARATOR)
    if not (sep and sep_last):
        raise _invalid(value, "expected TYPE:NAME:ACTIONS")
    type_match = _TYPE_RE.fullmatch(kind)
    if type_match is None:
        raise _invalid(value, f"resource type {kind!r} must be lowercase letters and digits")
    if not name:
        raise _invalid(value, "resource name is empty")
    resource_type = type_match["type"]
    if len(type_match["class"] or "") > MAX_CLASS_LENGTH:
        raise _invalid(value, f"resource class longer than {MAX_CLASS_LENGTH} characters")
    if resource_type == REPOSITORY and not is_valid_repository_name(name):
        raise _invalid(
            value,
            f"repository name {name!r} must be lowercase components of letters and digits "
            f"separated by '.', '_' or '-', joined by '/', at most "
            f"{MAX_REPOSITORY_NAME_LENGTH} characters",
        )
    if not action_list:
        raise _invalid(value, "no actions given")
    actions = action_list.split(ACTION_SEPARATOR)
    for action in actions:
        if _ACTION_RE.fullmatch(action) is None:
            raise _invalid(value, f"action {action!r} must be lowercase letters or '*'")
    return Scope(
        type=resource_type,
        name=name,
        actions=tuple(dict.fromkeys(actions)),
        resource_class=type_match["class"] or "",
    )


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope in the ``scope`` parameters; one parameter may hold several, space-separated."""
    return [parse_scope(item) for value in values for item in value.split()]
