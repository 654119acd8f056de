"""Shared pieces of the agent's tests: an enrolled state directory written directly (as
``fleet-agent enroll`` would leave it), and a fake fleet server that seals envelopes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.protocol.envelope import Kind, seal
from device_agent.protocol.keys import public_key_b64
from device_agent.state.enrollment import Enrollment, MqttLogin, RegistryInfo, save_enrollment
from device_agent.state.keys import DeviceKeys, load_or_create_device_keys, save_server_public_key

LOGIN_SERVER = "registry.example:5000"
SERVICE = "fleet-registry"
EXPIRY = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@dataclass
class FakeServer:
    """Seals envelopes for one device, with one version counter shared by both kinds."""

    device_id: str
    keys: DeviceKeys
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    login_server: str = LOGIN_SERVER
    username: str = ""
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.username = self.username or f"dev-{self.device_id}"

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.signing_key.public_key())

    def next_version(self) -> int:
        return next(self._versions)

    def seal(
        self,
        payload: dict[str, Any],
        kind: Kind,
        *,
        version: int | None = None,
        device_id: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> bytes:
        return seal(
            payload,
            device_id=device_id or self.device_id,
            version=version or self.next_version(),
            kind=kind,
            device_public_key=self.keys.x25519.public_key(),
            server_private_key=signing_key or self.signing_key,
            now=datetime.now(UTC),
        )

    def credentials(self, password: str, slot: str = "password1", **options: Any) -> bytes:
        payload = {
            "login_server": self.login_server,
            "username": self.username,
            "password": password,
            "slot": slot,
            "expiry": EXPIRY.isoformat(),
        }
        return self.seal(payload, Kind.CREDENTIALS, **options)

    def command(self, command: str, **args: Any) -> bytes:
        options = {k: args.pop(k) for k in ("version", "device_id", "signing_key") if k in args}
        return self.seal({"command": command, **args}, Kind.COMMAND, **options)


def enroll_directly(
    state_dir: Path,
    device_id: str,
    *,
    broker_url: str = "mqtt://127.0.0.1:1",
    mqtt_username: str | None = None,
    mqtt_password: str = "mqtt-password-for-tests",
    token_endpoint: str = "http://127.0.0.1:1/oauth2/token",
    login_server: str = LOGIN_SERVER,
    registry_username: str = "",
) -> tuple[Enrollment, FakeServer]:
    """Keys, server key and enrollment file, as a successful enrollment leaves them;
    ``registry_username`` is the device's token (``dev-<device id>`` when empty)."""
    keys = load_or_create_device_keys(state_dir)
    server = FakeServer(device_id, keys, login_server=login_server, username=registry_username)
    root = f"fleet/v1/devices/{device_id}"
    enrollment = Enrollment(
        server="http://127.0.0.1:1",
        device_id=device_id,
        status="active",
        mqtt=MqttLogin(
            url=broker_url,
            username=mqtt_username or device_id,
            password=mqtt_password,
            credentials_topic=f"{root}/credentials",
            commands_topic=f"{root}/commands",
            status_topic=f"{root}/status",
        ),
        registry=RegistryInfo(
            login_server=login_server,
            username=server.username,
            token_endpoint=token_endpoint,
            service=SERVICE,
        ),
        server_signing_key=server.public_key_b64,
        enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_enrollment(state_dir, enrollment)
    save_server_public_key(state_dir, server.public_key_b64)
    return enrollment, server
