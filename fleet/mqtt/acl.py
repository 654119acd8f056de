"""Dynamic-security ACL entries as values.

How mosquitto 2.0 evaluates them (plugins/dynamic-security/acl.c): a client's roles are tried
from the highest priority down, and inside a role its ACLs of the matching type from the highest
priority down; the first ACL whose topic matches decides. Nothing matching falls back to the
broker's default access, which out of the box *allows* ``publishClientReceive`` (and unsubscribe)
and denies publishClientSend and subscribe. Roles built here therefore end with explicit
low-priority denies on ``#`` so they never depend on that default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class AclType(StrEnum):
    # A client publishing to the broker.
    PUBLISH_CLIENT_SEND = "publishClientSend"
    # The broker delivering a message to a client (checked per message, retained ones too).
    PUBLISH_CLIENT_RECEIVE = "publishClientReceive"
    # The subscription filter must equal the ACL topic exactly.
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    # The subscription filter must lie inside the ACL filter (``#`` never fits inside ``a/#``).
    SUBSCRIBE_PATTERN = "subscribePattern"
    UNSUBSCRIBE_LITERAL = "unsubscribeLiteral"
    UNSUBSCRIBE_PATTERN = "unsubscribePattern"


@dataclass(frozen=True)
class Acl:
    acltype: AclType
    topic: str
    allow: bool
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "acltype": str(self.acltype),
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Acl:
        return cls(
            acltype=AclType(data["acltype"]),
            topic=str(data["topic"]),
            allow=bool(data.get("allow", False)),
            priority=int(data.get("priority", 0)),
        )
