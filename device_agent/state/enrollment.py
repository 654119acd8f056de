"""What enrollment gave this device, kept in ``enrollment.json`` (mode 0600: it holds the MQTT
password, which the broker shows only once).

The file is written atomically and is the commit point of an enrollment: it also carries the
server's signing key, so a crash before ``server_ed25519.pub`` is written loses nothing.
``repr`` never shows the password.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device_agent.protocol import topics as wire_topics
from device_agent.protocol.device_id import is_valid_device_id
from device_agent.protocol.keys import ed25519_public_from_b64
from device_agent.state.atomic import PRIVATE_MODE, write_atomic

FILENAME = "enrollment.json"
FILE_FORMAT = 1
MAX_FILE_BYTES = 64 * 1024
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MQTT_WILDCARDS = frozenset("+#")


class NotEnrolled(Exception):
    """No enrollment in this state directory."""


class InvalidEnrollment(ValueError):
    """An enrollment answer or file that cannot be used; the message names the bad field."""


@dataclass(frozen=True)
class MqttLogin:
    url: str
    username: str
    password: str = field(repr=False)
    credentials_topic: str
    commands_topic: str
    status_topic: str

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parsed = urllib.parse.urlsplit(self.url)
        return parsed.port or MQTT_SCHEMES[parsed.scheme]

    @property
    def tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True)
class RegistryInfo:
    login_server: str
    username: str
    token_endpoint: str
    service: str


@dataclass(frozen=True)
class Enrollment:
    server: str
    device_id: str
    status: str
    mqtt: MqttLogin
    registry: RegistryInfo
    server_signing_key: str
    enrolled_at: str

    def to_json(self) -> dict[str, Any]:
        return {"format": FILE_FORMAT, **asdict(self)}


def _text(source: dict[str, Any], key: str, where: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidEnrollment(f"{where}{key} is missing or not a string")
    return value


def _section(source: dict[str, Any], key: str) -> dict[str, Any]:
    value = source.get(key)
    if not isinstance(value, dict):
        raise InvalidEnrollment(f"{key} is missing or not an object")
    return value


def _mqtt_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in MQTT_SCHEMES or not parsed.hostname:
        raise InvalidEnrollment(f"mqtt.url {url!r} is not mqtt://HOST[:PORT] or mqtts://...")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidEnrollment(f"mqtt.url {url!r} has a bad port") from None
    return url


def _topics(device_id: str, given: object) -> dict[str, str]:
    """The answer's topics, each a literal topic (no wildcard) under the device's own root."""
    given = given if isinstance(given, dict) else {}
    topics: dict[str, str] = {}
    for name in wire_topics.LEAVES:
        topic = given.get(name, wire_topics.device_topic(device_id, name))
        if not isinstance(topic, str) or not topic or MQTT_WILDCARDS & set(topic):
            raise InvalidEnrollment(f"mqtt.topics.{name} is not a literal topic")
        topics[name] = topic
    return topics


def from_answer(server: str, answer: object, *, enrolled_at: str) -> Enrollment:
    """From the enrollment API's ``201`` body; raises ``InvalidEnrollment``."""
    if not isinstance(answer, dict):
        raise InvalidEnrollment("the answer is not a JSON object")
    device_id = _text(answer, "deviceId", "")
    if not is_valid_device_id(device_id):
        raise InvalidEnrollment(f"deviceId {device_id!r} is not a valid device id")
    mqtt, registry = _section(answer, "mqtt"), _section(answer, "registry")
    topics = _topics(device_id, mqtt.get("topics"))
    signing_key = _text(answer, "serverSigningKey", "")
    try:
        ed25519_public_from_b64(signing_key)
    except Exception as error:
        raise InvalidEnrollment(f"serverSigningKey: {error}") from None
    return Enrollment(
        server=server,
        device_id=device_id,
        status=_text(answer, "status", ""),
        mqtt=MqttLogin(
            url=_mqtt_url(_text(mqtt, "url", "mqtt.")),
            username=_text(mqtt, "username", "mqtt."),
            password=_text(mqtt, "password", "mqtt."),
            credentials_topic=topics["credentials"],
            commands_topic=topics["commands"],
            status_topic=topics["status"],
        ),
        registry=RegistryInfo(
            login_server=_text(registry, "loginServer", "registry."),
            username=_text(registry, "username", "registry."),
            token_endpoint=_text(registry, "tokenEndpoint", "registry."),
            service=_text(registry, "service", "registry."),
        ),
        server_signing_key=signing_key,
        enrolled_at=enrolled_at,
    )


def from_json(document: object) -> Enrollment:
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise InvalidEnrollment("unknown enrollment file format")
    try:
        mqtt, registry = dict(document["mqtt"]), dict(document["registry"])
        fields = {
            k: document[k] for k in Enrollment.__dataclass_fields__ if k not in ("mqtt", "registry")
        }
        return Enrollment(mqtt=MqttLogin(**mqtt), registry=RegistryInfo(**registry), **fields)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidEnrollment(f"enrollment file: {error}") from None


def path_in(state_dir: Path) -> Path:
    return state_dir / FILENAME


def is_enrolled(state_dir: Path) -> bool:
    return path_in(state_dir).exists()


def save_enrollment(state_dir: Path, enrollment: Enrollment) -> None:
    data = json.dumps(enrollment.to_json(), indent=2, sort_keys=True).encode("utf-8")
    write_atomic(path_in(state_dir), data, PRIVATE_MODE)


def load_enrollment(state_dir: Path) -> Enrollment:
    path = path_in(state_dir)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES)
    except FileNotFoundError:
        raise NotEnrolled(f"not enrolled ({path} is missing): run 'fleet-agent enroll'") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEnrollment(f"{path} is not JSON") from None
    return from_json(document)
