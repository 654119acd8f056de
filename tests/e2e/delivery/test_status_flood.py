"""A device floods its status topic with refusals, over the real broker, against a real
``fleet serve`` (two workers sharing the status stream): the server handles a bounded number,
records a bounded number of audit events, mints at most the reissue limit of passwords, and
serves the device normally once the window has passed (issue 12, defect 7)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.delivery.device import WireDevice
from tests.e2e.fleet_process import WORKERS, FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import DATABASES, server_database_url
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

FLOOD = 2000
REISSUE_LIMIT = 3
WINDOW_S = 10  # the reissue window: the smallest the settings allow
REPORT_S = 3
STATUS_BURST = 20  # the defaults: FLEET_STATUS_BURST, FLEET_STATUS_PER_MINUTE
STATUS_PER_MINUTE = 30


@dataclass
class Flood:
    server: FleetServer
    secret: str
    database_url: str

    def scalar(self, sql: str, **params: Any) -> int:
        url = self.database_url or f"sqlite:///{self.server.data_dir / 'fleet.db'}"
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                value: int = conn.execute(text(sql), params).scalar_one()
        finally:
            engine.dispose()
        return value

    def audit_rows(self, device_id: str, action: str | None = None) -> int:
        sql = "SELECT count(*) FROM audit_events WHERE target = :d"
        if action is None:
            return self.scalar(sql, d=device_id)
        return self.scalar(sql + " AND action = :a", d=device_id, a=action)

    def credential_deliveries(self, device_id: str) -> int:
        return self.scalar(
            "SELECT count(*) FROM deliveries JOIN devices ON devices.id = deliveries.device_pk"
            " WHERE devices.device_id = :d AND deliveries.kind = 'credentials'",
            d=device_id,
        )


@pytest.fixture(scope="module", params=DATABASES)
def flood(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flood]:
    broker = Mosquitto().start()
    env = {
        **broker.fleet_env(),
        "FLEET_SCHEDULER_ENABLED": "false",
        "FLEET_REISSUE_LIMIT": str(REISSUE_LIMIT),
        "FLEET_REISSUE_WINDOW_SECONDS": str(WINDOW_S),
        "FLEET_STATUS_REPORT_SECONDS": str(REPORT_S),
    }
    try:
        with (
            server_database_url(request.param) as url,
            FleetServer(tmp_path_factory.mktemp("flood"), env=env, database_url=url) as server,
        ):
            yield Flood(server, server.device_group("flooders"), url)
    finally:
        broker.stop()
        broker.cleanup()


def test_a_reject_flood_is_bounded_and_the_device_is_served_after_the_window(
    flood: Flood,
) -> None:
    device = WireDevice("flood-0001", flood.server.url)
    assert device.enroll(flood.secret).status_code == 201
    assert device.connect().is_failure is False
    device.wait_for(lambda: device.credentials is not None, "credentials")
    first = device.versions["credentials"]
    assert flood.credential_deliveries(device.device_id) == 1

    # 2,000 refusals as fast as paho sends them, each naming the version that would be the
    # newest if the one before had been acted on (so, unbounded, each would mint a password).
    started = time.monotonic()
    status_topic = device.enrollment["mqtt"]["topics"]["status"]
    for i in range(FLOOD):
        message = {
            "type": "reject",
            "kind": "credentials",
            "version": first + i,
            "reason": "CredentialsRefused",
        }
        last = device.client.publish(status_topic, json.dumps(message).encode(), qos=1)
    last.wait_for_publish(scaled(60))  # the broker has them all
    wait_until(
        lambda: (
            flood.audit_rows(device.device_id, "device.status.throttled")
            or flood.audit_rows(device.device_id) > 200
        ),
        "the server reported the dropped messages",
        timeout=60,
    )
    elapsed = time.monotonic() - started
    # Each worker takes a burst per device and kind, then refills at the configured rate.
    handled_bound = WORKERS * (STATUS_BURST + STATUS_PER_MINUTE / 60 * elapsed)
    rows = flood.audit_rows(device.device_id)
    throttled_rows = flood.audit_rows(device.device_id, "device.status.throttled")
    assert rows <= handled_bound + WORKERS * (elapsed / REPORT_S + 2), (rows, elapsed)
    assert 1 <= throttled_rows <= WORKERS * (elapsed / REPORT_S + 2)
    dropped = flood.scalar(
        "SELECT count(*) FROM audit_events WHERE target = :d AND action = :a",
        d=device.device_id,
        a="device.reissue.limited",
    )
    assert dropped == 1  # the refusals over the bound: recorded once in the window
    assert flood.credential_deliveries(device.device_id) == REISSUE_LIMIT
    details = [json.loads(d) for d in _details(flood, device.device_id, "device.status.throttled")]
    assert all(d["dropped"] >= 1 for d in details)

    # The passwords it was sent arrived; an ack sent amid the flood may have been dropped by
    # the broker's queue, and the hello an agent sends on reconnecting settles it (hellos and
    # acks have buckets of their own: the refusals did not use them up).
    device.wait_for(
        lambda: device.versions["credentials"] == first + REISSUE_LIMIT - 1, "the reissues"
    )
    device.say(type="hello", versions=device.versions)
    wait_until(
        lambda: (
            flood.scalar(
                "SELECT count(*) FROM deliveries JOIN devices ON devices.id = deliveries.device_pk"
                " WHERE devices.device_id = :d AND deliveries.state = 'pending'",
                d=device.device_id,
            )
            == 0
        ),
        "the device's acks were handled",
    )

    # Once the window has passed, a refusal of its newest password is acted on again. Sent
    # no faster than the bucket refills, so none is dropped for rate.
    held = device.versions["credentials"]
    sent: list[float] = []

    def refuse_until_served() -> bool:
        if device.versions["credentials"] > held:
            return True
        if not sent or time.monotonic() - sent[-1] >= 60 / STATUS_PER_MINUTE * WORKERS:
            sent.append(time.monotonic())
            device.say(type="reject", kind="credentials", version=held, reason="CredentialsRefused")
        return False

    wait_until(refuse_until_served, "a new password after the window", timeout=WINDOW_S + 60)
    assert flood.credential_deliveries(device.device_id) == REISSUE_LIMIT + 1
    device.disconnect()


def _details(flood: Flood, device_id: str, action: str) -> list[str]:
    url = flood.database_url or f"sqlite:///{flood.server.data_dir / 'fleet.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT detail FROM audit_events WHERE target = :d AND action = :a"),
                {"d": device_id, "a": action},
            ).all()
    finally:
        engine.dispose()
    return [r[0] for r in rows]
