"""The agent against a real mosquitto, with the device's login and ACLs made by the server's
own provisioning: hello on every connect, credentials delivered while offline or online, acks,
refusals of forged and replayed envelopes, wipe, a corrupt store, and a broker restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.state.store import FILENAME, load_state
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.provisioning import disable_device, enable_device, provision_server_login
from tests.e2e.agent.agent_mqtt import ServerSide
from tests.e2e.agent.conftest import Device
from tests.support.mosquitto import Mosquitto
from tests.support.timing import wait_until

pytestmark = pytest.mark.e2e


def is_type(type_: str, **fields: object) -> Callable[[dict], bool]:
    return lambda status: (
        status.get("type") == type_ and all(status.get(k) == v for k, v in fields.items())
    )


def test_hello_then_credentials_then_ack(
    make_device, start_agent, fleet_server: ServerSide
) -> None:
    device: Device = make_device()
    start_agent(device)
    hello = fleet_server.wait_for(device.device_id, is_type("hello"))
    assert hello["versions"] == {"credentials": 0, "command": 0} and hello["agent"]

    fleet_server.publish(device.device_id, "credentials", device.server.credentials("pw-1"))
    ack = fleet_server.wait_for(device.device_id, is_type("ack", kind="credentials"))
    assert ack == {"type": "ack", "kind": "credentials", "version": 1, "slot": "password1"}
    current = load_state(device.state_dir).current
    assert current is not None and current.password == "pw-1"


def test_a_delivery_made_while_offline_arrives_on_connect(
    make_device, start_agent, fleet_server: ServerSide
) -> None:
    device: Device = make_device()
    fleet_server.publish(device.device_id, "credentials", device.server.credentials("early"))
    start_agent(device)
    fleet_server.wait_for(device.device_id, is_type("ack", kind="credentials", version=1))


def test_forged_and_replayed_envelopes_never_replace_credentials(
    make_device, start_agent, fleet_server: ServerSide
) -> None:
    device: Device = make_device()
    server = device.server
    running = start_agent(device)
    first = server.credentials("first")
    fleet_server.publish(device.device_id, "credentials", first)
    fleet_server.publish(device.device_id, "credentials", server.credentials("second"))
    fleet_server.wait_for(device.device_id, is_type("ack", version=2))

    forged = server.credentials("forged", signing_key=Ed25519PrivateKey.generate())
    fleet_server.publish(device.device_id, "credentials", forged)
    fleet_server.wait_for(device.device_id, is_type("reject", reason="BadSignature"))
    fleet_server.publish(device.device_id, "credentials", first)  # a replay of version 1
    fleet_server.wait_for(device.device_id, is_type("reject", reason="StaleVersion", version=1))

    current = load_state(device.state_dir).current
    assert current is not None and current.password == "second"
    assert running.agent.handler.refusals == {"BadSignature": 1, "StaleVersion": 1}


def test_wipe_forgets_the_credentials(make_device, start_agent, fleet_server: ServerSide) -> None:
    device: Device = make_device()
    start_agent(device)
    fleet_server.publish(device.device_id, "credentials", device.server.credentials("pw"))
    fleet_server.wait_for(device.device_id, is_type("ack", kind="credentials"))
    fleet_server.publish(device.device_id, "commands", device.server.command("wipe"))
    fleet_server.wait_for(device.device_id, is_type("ack", kind="command", version=2))
    assert load_state(device.state_dir).current is None


def test_a_corrupt_store_is_moved_aside_and_redelivered(
    make_device, start_agent, fleet_server: ServerSide
) -> None:
    device: Device = make_device()
    first = start_agent(device)
    fleet_server.publish(device.device_id, "credentials", device.server.credentials("pw"))
    fleet_server.wait_for(device.device_id, is_type("ack", kind="credentials"))
    first.stop()

    store_file = device.state_dir / FILENAME
    store_file.write_bytes(store_file.read_bytes().replace(b'"pw"', b'"px"'))
    marker = fleet_server.marker()
    start_agent(device)
    hello = fleet_server.wait_for(device.device_id, is_type("hello"), since=marker)
    assert hello["versions"]["credentials"] == 0  # so the server delivers again
    assert list(device.state_dir.glob(f"{FILENAME}.corrupt-*"))
    # the retained envelope is delivered again on subscribe, and accepted anew
    ack = is_type("ack", kind="credentials", version=1)
    fleet_server.wait_for(device.device_id, ack, since=marker)
    current = load_state(device.state_dir).current
    assert current is not None and current.password == "pw"


def test_a_message_sent_while_the_agent_was_away_is_kept_by_its_session(
    make_device, start_agent, fleet_server: ServerSide
) -> None:
    """clean_session off: the broker queues QoS 1 messages for the stopped agent's client id,
    even those not retained."""
    device: Device = make_device()
    first = start_agent(device)
    fleet_server.wait_for(device.device_id, is_type("hello"))
    first.stop()
    command = device.server.command("pull", images=[])
    fleet_server.publish(device.device_id, "commands", command, retain=False)
    start_agent(device)
    fleet_server.wait_for(device.device_id, is_type("ack", kind="command", version=1))


def test_the_agent_reconnects_after_a_broker_restart_and_says_hello_again(
    make_device, start_agent
) -> None:
    """The broker dies under a connected agent (SIGKILL) and comes back on the same port: the
    agent connects exactly once more, and its session carries traffic both ways again.

    The watcher reconnects on its own pace and may miss the hello of that reconnection, so the
    hello is proven on the connect after: the device is kicked off (an operator's disable and
    enable) once the watcher is subscribed again, and the awaited hello must report the command
    acknowledged after the restart. No hello from before can match it."""
    with Mosquitto() as broker:
        device: Device = make_device(broker)
        address = BrokerAddress(broker.host, broker.port)
        admin = DynsecAdmin(address, broker.admin_username, broker.admin_password).start()
        provision_server_login(admin, "server-own", "server-own-password")
        watcher = ServerSide(broker.host, broker.port, "server-own", "server-own-password")
        said = device.device_id
        try:
            running = start_agent(device)
            link = running.agent.link
            watcher.publish(said, "credentials", device.server.credentials("pw"))
            watcher.wait_for(said, is_type("ack", kind="credentials", version=1))
            assert link.connects == 1

            subscribed = watcher.subscriptions
            broker.kill()
            wait_until(lambda: not link.connected, "the agent to notice the broker is gone")
            broker.restart()
            wait_until(lambda: link.connected and link.connects == 2, "the agent to connect again")
            watcher.wait_subscribed(after=subscribed)

            # the session after the restart: a command reaches the agent, its ack reaches us
            # (the fake server counts one version for both kinds: the command is version 2)
            marker = watcher.marker()
            watcher.publish(said, "commands", device.server.command("pull", images=[]))
            watcher.wait_for(said, is_type("ack", kind="command", version=2), since=marker)

            admin.close()
            admin = DynsecAdmin(address, broker.admin_username, broker.admin_password).start()
            disable_device(admin, device.enrollment.mqtt.username)
            wait_until(lambda: not link.connected, "the disabled device to be kicked off")
            marker = watcher.marker()
            enable_device(admin, device.enrollment.mqtt.username)
            hello = watcher.wait_for(said, is_type("hello"), since=marker)
            assert hello["versions"] == {"credentials": 1, "command": 2}
            wait_until(lambda: link.connected, "the agent to be connected")
            assert link.connects == 3, "one connect per broker session, no more"
            running.stop()
        finally:
            watcher.close()
            admin.close()
