"""The ACLs of ``fleet.mqtt.provisioning`` decided here, for brokers that ask fleet over HTTP.

Mosquitto evaluates the dynamic-security roles itself; a broker in ``FLEET_MQTT_AUTH=http`` mode
asks, per login, subscription and publish, and these functions give the answer the same ACLs
give under dynamic security (see ``fleet.mqtt.acl``): of the entries of the asked type, the one
of the highest priority whose topic matches decides (a deny before an allow of the same
priority); nothing matching is a deny.

- a publish (``PUBLISH_CLIENT_SEND``): the topic, which holds no wildcard, matches the entry;
- a subscription (``SUBSCRIBE_PATTERN``): the filter lies inside the entry's filter
  (``fleet/v1/devices/a/#`` lies inside itself, ``#`` and ``fleet/v1/devices/+/#`` do not).

RabbitMQ names topics as AMQP routing keys: ``.`` where MQTT has ``/``, ``*`` for ``+``;
``from_routing_key`` turns one back (device ids and fleet's topics hold no ``.``).
"""

from __future__ import annotations

from collections.abc import Iterable

from fleet.mqtt.acl import Acl, AclType

SEPARATOR = "/"
SINGLE = "+"
MULTI = "#"
MAX_TOPIC_LENGTH = 1024
MAX_LEVELS = 32


def is_topic(topic: str) -> bool:
    """A topic one may publish to: bounded, no wildcard, no empty string, no NUL."""
    return (
        0 < len(topic) <= MAX_TOPIC_LENGTH
        and SINGLE not in topic
        and MULTI not in topic
        and "\0" not in topic
        and topic.count(SEPARATOR) < MAX_LEVELS
    )


def is_filter(topic_filter: str) -> bool:
    """A well-formed subscription filter: ``+`` and ``#`` only as whole levels, ``#`` last."""
    if not 0 < len(topic_filter) <= MAX_TOPIC_LENGTH or "\0" in topic_filter:
        return False
    levels = topic_filter.split(SEPARATOR)
    if len(levels) > MAX_LEVELS:
        return False
    for index, level in enumerate(levels):
        if MULTI in level and (level != MULTI or index != len(levels) - 1):
            return False
        if SINGLE in level and level != SINGLE:
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a topic against a filter (``a/#`` matches ``a`` too; a wildcard at the
    first level never matches a ``$`` topic)."""
    if topic.startswith("$") and topic_filter[:1] in (SINGLE, MULTI):
        return False
    wanted, levels = topic_filter.split(SEPARATOR), topic.split(SEPARATOR)
    for index, part in enumerate(wanted):
        if part == MULTI:
            return True
        if index >= len(levels):
            return False
        if part != SINGLE and part != levels[index]:
            return False
    return len(wanted) == len(levels)


def filter_within(topic_filter: str, allowed: str) -> bool:
    """Whether every topic ``topic_filter`` matches is matched by ``allowed`` too."""
    if topic_filter.startswith("$") and allowed[:1] in (SINGLE, MULTI):
        return False
    wanted, held = topic_filter.split(SEPARATOR), allowed.split(SEPARATOR)
    for index, part in enumerate(held):
        if part == MULTI:
            return True
        if index >= len(wanted):
            return False
        mine = wanted[index]
        if mine == MULTI:
            return False
        if part == SINGLE:
            continue
        if mine != part:  # a "+" of ours does not lie inside a literal level
            return False
    return len(wanted) == len(held)


def decide(acls: Iterable[Acl], acltype: AclType, topic: str) -> bool:
    """The first entry of ``acltype`` (highest priority first, deny first) that covers
    ``topic`` decides; none: deny."""
    if acltype == AclType.PUBLISH_CLIENT_SEND:
        if not is_topic(topic):
            return False
    elif acltype == AclType.SUBSCRIBE_PATTERN:
        if not is_filter(topic):
            return False
    else:
        raise ValueError(f"no decision for {acltype}")
    ordered = sorted(
        (acl for acl in acls if acl.acltype == acltype), key=lambda a: (-a.priority, a.allow)
    )
    for acl in ordered:
        if acltype == AclType.PUBLISH_CLIENT_SEND:
            covered = topic_matches(acl.topic, topic)
        else:
            covered = filter_within(topic, acl.topic)
        if covered:
            return acl.allow
    return False


def from_routing_key(routing_key: str) -> str:
    """RabbitMQ's routing key (or binding key) as the MQTT topic (or filter) it came from."""
    return SEPARATOR.join(SINGLE if part == "*" else part for part in routing_key.split("."))
