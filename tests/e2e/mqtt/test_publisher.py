"""The server's publisher against a real broker: PUBACK waits, refusals, status callbacks."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleet.mqtt import topics
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.errors import PublishRejectedError
from fleet.mqtt.publisher import MAX_INFLIGHT_MESSAGES, Publication, Publisher
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e
WAIT_S = 5.0
MANY = 200

Status = tuple[str, bytes]


@pytest.fixture
def statuses() -> queue.Queue[Status]:
    return queue.Queue()


@pytest.fixture
def publisher(
    address: BrokerAddress,
    server_login: Any,
    statuses: queue.Queue[Status],
    fast_reconnect: dict[str, float],
) -> Iterator[Publisher]:
    with Publisher(
        address,
        server_login.username,
        server_login.password,
        on_status=lambda device_id, payload: statuses.put((device_id, payload)),
        **fast_reconnect,
    ) as running:
        yield running


def test_publish_returns_once_acknowledged_and_the_device_gets_it_retained(
    publisher: Publisher, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    publisher.publish(topics.credentials_topic(login.device_id), b"\x00sealed\xff")
    client = connect(login)
    client.subscribe(topics.device_filter(login.device_id))
    message = client.wait_for_message(topics.credentials_topic(login.device_id))
    assert message.payload == b"\x00sealed\xff"
    assert message.retain


def test_publish_many_waits_for_every_ack(
    publisher: Publisher, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    topic = topics.commands_topic(login.device_id)
    client = connect(login)
    client.subscribe(topic)
    publisher.publish_many([Publication(topic, str(i).encode(), retain=False) for i in range(MANY)])
    client.wait_for_message(topic, str(MANY - 1).encode())
    assert [m.payload for m in client.messages] == [str(i).encode() for i in range(MANY)]


def test_publish_many_past_the_inflight_window_loses_nothing_and_keeps_the_order(
    publisher: Publisher, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    """More messages than may be in flight at once (paho's window, raised from its 20, and
    the broker's receive maximum): every one acknowledged, every one delivered, in order."""
    count = 2 * MAX_INFLIGHT_MESSAGES + 1
    login = device()
    topic = topics.commands_topic(login.device_id)
    client = connect(login)
    client.subscribe(topic)
    publisher.publish_many(
        [Publication(topic, str(i).encode(), retain=False) for i in range(count)],
        timeout_s=scaled(60),
    )
    client.wait_for_message(topic, str(count - 1).encode())
    assert [m.payload for m in client.messages] == [str(i).encode() for i in range(count)]


def test_a_refused_publish_raises(publisher: Publisher) -> None:
    with pytest.raises(PublishRejectedError) as refused:
        publisher.publish(topics.status_topic("pi-1"), b"the server may not write status")
    assert "Not authorized" in str(refused.value)
    assert "fleet/v1/devices/pi-1/status" in str(refused.value)


def test_status_reaches_the_callback_with_the_device_id(
    publisher: Publisher,
    statuses: queue.Queue[Status],
    device: Callable[[], Any],
    connect: Callable[..., Any],
) -> None:
    login = device()
    connect(login).publish(topics.status_topic(login.device_id), b'{"holds": 3}')
    assert statuses.get(timeout=scaled(WAIT_S)) == (login.device_id, b'{"holds": 3}')


def test_servers_in_one_share_group_split_the_status_stream(
    address: BrokerAddress,
    server_login: Any,
    device: Callable[[], Any],
    connect: Callable[..., Any],
    fast_reconnect: dict[str, float],
) -> None:
    heard: queue.Queue[tuple[int, str]] = queue.Queue()
    servers = [
        Publisher(
            address,
            server_login.username,
            server_login.password,
            on_status=lambda device_id, _payload, n=n: heard.put((n, device_id)),
            share_group="fleet",
            **fast_reconnect,
        ).start()
        for n in range(2)
    ]
    try:
        login = device()
        client = connect(login)
        count = 10
        for i in range(count):
            client.publish(topics.status_topic(login.device_id), str(i).encode())
        got = [heard.get(timeout=scaled(WAIT_S)) for _ in range(count)]
        assert {device_id for _n, device_id in got} == {login.device_id}
        assert {n for n, _device_id in got} == {0, 1}  # mosquitto round-robins
        assert heard.empty()
    finally:
        for server in servers:
            server.close()


def test_a_failing_status_callback_does_not_stop_the_connection(
    address: BrokerAddress,
    server_login: Any,
    device: Callable[[], Any],
    connect: Callable[..., Any],
    fast_reconnect: dict[str, float],
) -> None:
    seen: queue.Queue[bytes] = queue.Queue()

    def fragile(_device_id: str, payload: bytes) -> None:
        seen.put(payload)
        if payload == b"boom":
            raise RuntimeError("callback bug")

    with Publisher(
        address, server_login.username, server_login.password, on_status=fragile, **fast_reconnect
    ) as server:
        login = device()
        client = connect(login)
        client.publish(topics.status_topic(login.device_id), b"boom")
        client.publish(topics.status_topic(login.device_id), b"after")
        got = [seen.get(timeout=scaled(WAIT_S)) for _ in range(2)]
        assert got == [b"boom", b"after"]
        assert server.connected
        server.publish(topics.commands_topic(login.device_id), b"still works")
