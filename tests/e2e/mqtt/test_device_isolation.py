"""A device reads only its own topics and writes only its own status (real mosquitto).

"Receives nothing" is shown without long sleeps: after the forbidden attempt, a message the
client *is* allowed to get is sent along the same path; mosquitto handles one client's packets
in order, so once that one has arrived the forbidden one would have arrived before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fleet.mqtt import topics
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.dynsec import DynsecAdmin

pytestmark = pytest.mark.e2e

NOT_AUTHORIZED = "Not authorized"
PROTOCOLS = [pytest.param(mqtt.MQTTv5, id="mqtt5"), pytest.param(mqtt.MQTTv311, id="mqtt311")]
# A refused SUBACK: MQTT 5 gives the reason; 3.1.1 has only its one failure code (0x80).
REFUSED_SUBSCRIBE = {mqtt.MQTTv5: NOT_AUTHORIZED, mqtt.MQTTv311: "Unspecified error"}


def _retain(server: Any, device_id: str, payload: bytes) -> None:
    assert not server.publish(topics.credentials_topic(device_id), payload, retain=True).is_failure


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_device_gets_its_own_retained_message_and_nothing_of_another(
    device: Callable[[], Any], server_login: Any, connect: Callable[..., Any], protocol: int
) -> None:
    a, b = device(), device()
    server = connect(server_login)
    _retain(server, b.device_id, b"for B only")
    _retain(server, a.device_id, b"for A")

    client = connect(a, protocol)
    for forbidden in (
        f"fleet/v1/devices/{b.device_id}/#",
        topics.credentials_topic(b.device_id),
        "fleet/v1/devices/+/credentials",
        "#",
        "$SYS/#",
        f"$share/g/fleet/v1/devices/{b.device_id}/#",
    ):
        (granted,) = client.subscribe(forbidden)
        assert granted.is_failure and str(granted) == REFUSED_SUBSCRIBE[protocol], forbidden
    (granted,) = client.subscribe(topics.device_filter(a.device_id))
    assert not granted.is_failure

    own = client.wait_for_message(topics.credentials_topic(a.device_id), b"for A")
    assert own.retain
    # Live traffic too: B's message first, then A's on the same server connection.
    server.publish(topics.commands_topic(b.device_id), b"B command")
    server.publish(topics.commands_topic(a.device_id), b"A command")
    client.wait_for_message(topics.commands_topic(a.device_id), b"A command")
    assert all(f"/{b.device_id}/" not in topic for topic in client.topics_received())


def test_receiving_is_denied_even_when_a_subscription_slips_through(
    admin: DynsecAdmin, device: Callable[[], Any], server_login: Any, connect: Callable[..., Any]
) -> None:
    """Defence in depth: give A an extra role that lets it subscribe to ``#``; the device role's
    publishClientReceive deny still keeps B's messages from it."""
    a, b = device(), device()
    leaky = f"leaky-{a.device_id}"
    admin.create_role(leaky, [Acl(AclType.SUBSCRIBE_PATTERN, "#", allow=True, priority=100)])
    admin.add_client_role(a.username, leaky, priority=100)
    try:
        server = connect(server_login)
        client = connect(a)
        (granted,) = client.subscribe("#")
        assert not granted.is_failure  # the slip
        server.publish(topics.credentials_topic(b.device_id), b"B secret", retain=True)
        server.publish(topics.credentials_topic(a.device_id), b"A secret", retain=True)
        client.wait_for_message(topics.credentials_topic(a.device_id), b"A secret")
        assert all(f"/{b.device_id}/" not in topic for topic in client.topics_received())
    finally:
        admin.delete_role(leaky)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_device_writes_only_its_own_status(
    device: Callable[[], Any], server_login: Any, connect: Callable[..., Any], protocol: int
) -> None:
    a, b = device(), device()
    watcher = connect(server_login)
    (granted,) = watcher.subscribe(topics.ALL_STATUS_TOPICS)
    assert not granted.is_failure
    b_client = connect(b)
    b_client.subscribe(topics.device_filter(b.device_id))

    client = connect(a, protocol)
    forged_status = client.publish(topics.status_topic(b.device_id), b"forged")
    forged_credentials = client.publish(topics.credentials_topic(a.device_id), b"forged")
    forged_command = client.publish(topics.commands_topic(b.device_id), b"forged")
    if protocol == mqtt.MQTTv5:
        # MQTT 5 tells the device: PUBACK "Not authorized".
        assert [str(r) for r in (forged_status, forged_credentials, forged_command)] == [
            NOT_AUTHORIZED
        ] * 3
    else:
        # MQTT 3.1.1 cannot: the broker acknowledges and silently drops.
        assert not forged_status.is_failure

    assert not client.publish(topics.status_topic(a.device_id), b"ok").is_failure
    watcher.wait_for_message(topics.status_topic(a.device_id), b"ok")
    assert watcher.topics_received() == [topics.status_topic(a.device_id)]
    # B heard nothing either (its subscription covers its status and commands topics).
    b_client.publish(topics.status_topic(b.device_id), b"B alive")
    b_client.wait_for_message(topics.status_topic(b.device_id), b"B alive")
    assert [m.payload for m in b_client.messages] == [b"B alive"]


def test_the_server_login_is_limited_too(server_login: Any, connect: Callable[..., Any]) -> None:
    server = connect(server_login)
    assert server.subscribe("#")[0].is_failure
    assert server.subscribe("fleet/v1/devices/+/credentials")[0].is_failure
    assert server.publish(topics.status_topic("pi-1"), b"forged").is_failure
    assert not server.subscribe(topics.ALL_STATUS_TOPICS)[0].is_failure
    assert not server.subscribe(f"$share/fleet/{topics.ALL_STATUS_TOPICS}")[0].is_failure
