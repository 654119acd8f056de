"""Services in FLEET_MQTT_AUTH=http mode for the service and API tests: the http broker's
logins (the database, the real code) with the fake broker's publishing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleet.domain.rules import RepositoryActions
from fleet.mqtt.publisher import Publication
from fleet.services import Services
from fleet.services.http_broker import HttpAuthBroker
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker

SECRET = "s" * 32
HTTP_MODE = {
    "mqtt_auth": "http",
    "mqtt_auth_secret": SECRET,
    "mqtt_url": "mqtt://127.0.0.1:9",  # never connected: publishing goes to the fake
}
SERVER_CLIENT = "fleet-server-0123456789ab"


@dataclass
class HttpLogins:
    """The http broker's logins (the database) with the fake broker's publishing."""

    logins: HttpAuthBroker
    fake: FakeBroker

    @property
    def device_url(self) -> str:
        return self.fake.device_url

    def provision_device(self, device_id: str, username: str, password: str) -> None:
        self.fake.provision_device(device_id, username, password)  # to read the password
        self.logins.provision_device(device_id, username, password)

    def disable_device(self, username: str) -> None:
        self.logins.disable_device(username)

    def enable_device(self, username: str) -> None:
        self.logins.enable_device(username)

    def delete_device(self, device_id: str, username: str) -> None:
        self.logins.delete_device(device_id, username)

    def publish(self, publications: Sequence[Publication]) -> None:
        self.fake.publish(publications)

    def close(self) -> None:
        self.logins.close()


def http_fleet(make_services: Any) -> Services:
    """Services in http mode on this test's database, with groups "pilots" and "careful"
    (which needs approval)."""
    services: Services = make_services(**HTTP_MODE)
    ctx = services.ctx
    services.broker = HttpLogins(
        HttpAuthBroker(ctx.settings, ctx.hasher, ctx.db, on_status=None), FakeBroker()
    )
    services.scope_maps.create(
        "devices-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="devices-read", actor="t")
    services.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    return services


def enroll(fleet: Services, device_id: str, group: str = "pilots") -> str:
    secret = fleet.groups.create_secret(group, actor="t").value or ""
    _, password = fleet.devices.enroll(device_id, secret, *new_device(device_id).keys)
    return password


def client(device_id: str) -> str:
    return f"fleet-agent-{device_id}"
