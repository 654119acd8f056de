"""How the services are put together (issue 14, part 4): one place builds them, each with its
collaborators passed to its constructor; the broker is made on first use, with the handlers
that subscribed to it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from fleet.mqtt.errors import BrokerUnavailableError
from fleet.scheduler import FleetScheduler
from fleet.services import Services
from fleet.services import broker as broker_module
from fleet.services.broker import BrokerLink, NoBroker
from fleet.services.leadership import FileLeadership
from fleet.services.scheduler_runs import MAX_ERROR
from tests.conftest import FakeClock
from tests.support.fake_broker import FakeBroker


def test_each_collaborator_is_the_one_instance_built_for_the_process(
    services: Services, tmp_path: Path
) -> None:
    assert services.delivery.reissuer is services.rotation
    assert services.devices.rotation is services.rotation
    assert services.devices.delivery is services.delivery
    assert services.devices.envelopes is services.envelopes
    assert services.rotation.envelopes is services.envelopes
    assert services.devices.tokens is services.tokens
    assert services.reconciler.devices is services.devices
    assert services.reconciler.delivery is services.delivery
    scheduler = FleetScheduler(services, FileLeadership(tmp_path / "scheduler.lock"))
    try:  # the scheduler's jobs run the services' own, built with the rest
        assert scheduler.reconciler is services.reconciler
        assert scheduler.retention is services.retention
        assert scheduler.sender is services.webhook
    finally:
        scheduler.stop()


def test_without_a_broker_configured_the_first_use_makes_one_that_says_what_to_set(
    services: Services,
) -> None:
    assert services.broker is None  # nothing is made, nor connected, before it is needed
    made = services.connected_broker()
    assert isinstance(made, NoBroker)
    assert services.broker is made and services.connected_broker() is made
    with pytest.raises(BrokerUnavailableError, match="FLEET_MQTT_URL"):
        made.publish([])


def test_a_broker_given_to_the_services_is_the_one_every_service_uses(
    services: Services,
) -> None:
    given = FakeBroker()
    services.broker = given
    assert services.connected_broker() is given
    services.delivery.clear_retained("edge-0001")  # publishes through the provider
    assert [p.topic for p in given.published][-2:] == [
        "fleet/v1/devices/edge-0001/credentials",
        "fleet/v1/devices/edge-0001/commands",
    ]


class _Recorder:
    """Stands in for MosquittoBroker: records what the link built it with."""

    made: list[dict[str, Any]] = []

    def __init__(self, settings: Any, hasher: Any, on_status: Any, on_reconnect: Any) -> None:
        self.made.append({"on_status": on_status, "on_reconnect": on_reconnect})

    def close(self) -> None:
        pass


@pytest.mark.parametrize("listen_status", [True, False])
def test_the_broker_is_made_with_the_handlers_that_subscribed(
    services: Services, monkeypatch: pytest.MonkeyPatch, listen_status: bool
) -> None:
    monkeypatch.setattr(broker_module, "MosquittoBroker", _Recorder)
    _Recorder.made.clear()
    settings = replace(services.ctx.settings, mqtt_url="mqtt://127.0.0.1:1")
    link = BrokerLink(settings, services.ctx.hasher, listen_status=listen_status)
    heard: list[tuple[str, bytes]] = []
    on_status: Callable[[str, bytes], None] = lambda d, raw: heard.append((d, raw))  # noqa: E731
    on_reconnect: Callable[[], None] = lambda: None  # noqa: E731
    link.listen(on_status, on_reconnect)
    assert _Recorder.made == []  # made on first use only
    first = link.get()
    assert link.get() is first
    assert _Recorder.made == [
        {"on_status": on_status if listen_status else None, "on_reconnect": on_reconnect}
    ]


def test_the_enrollment_answer_carries_the_key_that_verifies_envelopes(
    services: Services,
) -> None:
    raw = services.envelopes.envelope_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert base64.b64decode(services.envelopes.server_signing_key()) == raw


def test_a_pass_is_recorded_when_it_starts_and_when_it_ends(
    services: Services, clock: FakeClock
) -> None:
    runs = services.scheduler_runs
    first = runs.start("host-a:1")
    clock.advance(seconds=5)
    (started,) = runs.recent()
    assert (started.id, started.node, started.finished_at, started.error) == (
        first,
        "host-a:1",
        None,
        None,
    )
    ended = clock()
    runs.finish(first, None, "RuntimeError: " + "x" * 5000)
    second = runs.start("host-b:2")
    newest, oldest = runs.recent()
    assert newest.id == second and oldest.id == first  # newest first
    assert oldest.finished_at == ended
    assert oldest.summary == "{}"
    assert oldest.error is not None and len(oldest.error) == MAX_ERROR
    assert runs.recent(limit=1) == [newest]
