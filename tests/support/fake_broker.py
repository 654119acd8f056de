"""A broker stand-in for unit and service tests: records logins and publications.

End-to-end tests use the real mosquitto (tests/support/mosquitto.py) instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.mqtt.errors import BrokerUnavailableError
from fleet.mqtt.publisher import Publication


@dataclass
class FakeBroker:
    device_url: str = "mqtt://broker.test:1883"
    logins: dict[str, dict[str, object]] = field(default_factory=dict)
    published: list[Publication] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailableError("the fake broker is down")

    def provision_device(self, device_id: str, username: str, password: str) -> None:
        self._check()
        # As the real one: provisioning again never re-enables a login that was disabled.
        enabled = self.logins.get(username, {}).get("enabled", True)
        self.logins[username] = {"device_id": device_id, "password": password, "enabled": enabled}

    def disable_device(self, username: str) -> None:
        self._check()
        self.logins[username]["enabled"] = False

    def enable_device(self, username: str) -> None:
        self._check()
        self.logins[username]["enabled"] = True

    def delete_device(self, device_id: str, username: str) -> None:
        self._check()
        self.logins.pop(username, None)

    def publish(self, publications: Sequence[Publication]) -> None:
        self._check()
        for p in publications:
            self.published.append(p)
            if p.retain:
                if p.payload:
                    self.retained[p.topic] = p.payload
                else:
                    self.retained.pop(p.topic, None)

    def close(self) -> None:
        pass
