"""The system-defined scope maps: always present, read-only, over every repository."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.domain.actions import ALL_ACTIONS, Action
from fleet.domain.patterns import WILDCARD


@dataclass(frozen=True, slots=True)
class SystemScopeMap:
    name: str
    description: str
    actions: frozenset[Action]

    @property
    def entries(self) -> list[tuple[str, Action]]:
        return [(WILDCARD, a) for a in self.actions]


SYSTEM_SCOPE_MAPS: tuple[SystemScopeMap, ...] = (
    SystemScopeMap(
        "_repositories_admin",
        "Can perform all read, write and delete operations on the registry",
        ALL_ACTIONS,
    ),
    SystemScopeMap(
        "_repositories_pull",
        "Can pull any repository of the registry",
        frozenset({Action.CONTENT_READ}),
    ),
    SystemScopeMap(
        "_repositories_pull_metadata_read",
        "Can perform all read operations on the registry",
        frozenset({Action.CONTENT_READ, Action.METADATA_READ}),
    ),
    SystemScopeMap(
        "_repositories_push",
        "Can push to any repository of the registry",
        frozenset({Action.CONTENT_READ, Action.CONTENT_WRITE}),
    ),
    SystemScopeMap(
        "_repositories_push_metadata_write",
        "Can perform all read and write operations on the registry",
        frozenset(
            {Action.CONTENT_READ, Action.CONTENT_WRITE, Action.METADATA_READ, Action.METADATA_WRITE}
        ),
    ),
)

SYSTEM_SCOPE_MAP_NAMES = frozenset(m.name for m in SYSTEM_SCOPE_MAPS)
