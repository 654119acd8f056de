"""What survives a broker crash (SIGKILL) or a clean stop, and how our clients come back.

Observed with mosquitto 2.0.11:
- dynsec clients, roles and disabled flags survive both: the plugin rewrites its JSON file
  (write to FILE.new, then rename) on every change;
- retained messages are lost on SIGKILL (persistence is only written on autosave or on a
  clean stop) and kept on a clean stop.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest

from fleet.mqtt import topics
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.errors import BrokerTimeoutError
from fleet.mqtt.provisioning import disable_device, provision_device, provision_server_login
from fleet.mqtt.publisher import Publisher
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e
WAIT_S = 5.0
RECONNECT_WAIT_S = 5.0
DOWN_TIMEOUT_S = 0.3


def _setup(
    broker: Mosquitto, fresh_login: Callable[[], Any], fast: dict[str, float]
) -> tuple[DynsecAdmin, Any, Any, Any]:
    admin = DynsecAdmin(
        BrokerAddress(broker.host, broker.port),
        broker.admin_username,
        broker.admin_password,
        **fast,
    ).start()
    device, disabled, server = fresh_login(), fresh_login(), fresh_login()
    for login in (device, disabled):
        provision_device(admin, login.device_id, login.username, login.password)
    disable_device(admin, disabled.username)
    provision_server_login(admin, server.username, server.password)
    return admin, device, disabled, server


def _wait_connected(client: DynsecAdmin | Publisher) -> None:
    wait_until(lambda: client.connected, f"{type(client).__name__} reconnected", RECONNECT_WAIT_S)


@pytest.mark.parametrize(
    ("how", "retained_survives"),
    [pytest.param("kill", False, id="sigkill"), pytest.param("stop", True, id="clean-stop")],
)
def test_logins_survive_a_restart_and_retained_messages_only_a_clean_one(
    own_broker: Mosquitto,
    fresh_login: Callable[[], Any],
    connect: Callable[..., Any],
    fast_reconnect: dict[str, float],
    how: str,
    retained_survives: bool,
) -> None:
    admin, device, disabled, server = _setup(own_broker, fresh_login, fast_reconnect)
    statuses: queue.Queue[tuple[str, bytes]] = queue.Queue()
    publisher = Publisher(
        BrokerAddress(own_broker.host, own_broker.port),
        server.username,
        server.password,
        on_status=lambda device_id, payload: statuses.put((device_id, payload)),
        **fast_reconnect,
    ).start()
    credentials = topics.credentials_topic(device.device_id)
    commands = topics.commands_topic(device.device_id)
    try:
        publisher.publish(credentials, b"v1")

        if how == "kill":
            own_broker.kill()
        else:
            own_broker.stop()
        with pytest.raises(BrokerTimeoutError):
            publisher.publish(commands, b"wipe", timeout_s=DOWN_TIMEOUT_S)
        own_broker.start()

        # Logins are back, with their state.
        client = connect(device, to=own_broker)
        assert connect(disabled, to=own_broker, expect_ok=False).connack.is_failure
        # Our long-lived connections came back by themselves, subscriptions included.
        _wait_connected(admin)
        _wait_connected(publisher)
        assert device.username in admin.list_clients()
        client.publish(topics.status_topic(device.device_id), b"back")
        assert statuses.get(timeout=scaled(WAIT_S)) == (device.device_id, b"back")

        # The publish that timed out while the broker was down stayed queued in paho and was
        # sent on reconnecting: it arrives late (receivers must ignore versions they hold).
        client.subscribe(commands)
        client.wait_for_message(commands, b"wipe")

        # Was the retained v1 kept? Its retained copy would come before the one on commands.
        late = connect(device, to=own_broker)
        late.subscribe(credentials)
        late.subscribe(commands)
        late.wait_for_message(commands, b"wipe")
        assert (credentials in late.topics_received()) is retained_survives
    finally:
        publisher.close()
        admin.close()
