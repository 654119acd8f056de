"""The agent's configuration file: TOML (``.toml``) or JSON (any other name), every key
optional, unknown keys refused (a typo must not silently change nothing)::

    log_level = "info"

    [pull]
    backend = "builtin"        # builtin | skopeo | docker | podman
    images = ["samples/app:1.0", "samples/db@sha256:..."]
    interval = 3600            # seconds between two pulls of one image
    tls_verify = true          # false: accept any certificate, and plain HTTP
    platform = "linux/arm64"   # from an image index; the first entry when absent
    output = "/var/lib/fleet-agent/images"   # OCI layouts (builtin, skopeo)
    timeout = 900              # seconds one pull may take
    backoff_base = 30          # after failed pulls wait up to base, 2 x base ... (full jitter,
    backoff_cap = 3600         # at least base), at most the cap

    [mqtt]
    keepalive = 60
    reconnect_min = 1          # backoff base and cap, seconds
    reconnect_max = 300
    ca_file = "/etc/fleet-agent/ca.crt"   # for mqtts:// (system CAs when absent)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_FILE = Path("/etc/fleet-agent/agent.toml")
BACKENDS = ("builtin", "skopeo", "docker", "podman")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PLATFORM = "linux/arm64"
MIN_INTERVAL_S = 10.0
MAX_IMAGES = 50
MAX_CONFIG_BYTES = 256 * 1024


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class PullConfig:
    backend: str = "builtin"
    images: tuple[str, ...] = ()
    interval_s: float = 3600.0
    tls_verify: bool = True
    platform: str = DEFAULT_PLATFORM
    output: Path | None = None  # None: <state dir>/images
    timeout_s: float = 900.0
    backoff_base_s: float = 30.0
    backoff_cap_s: float = 3600.0


@dataclass(frozen=True)
class MqttConfig:
    keepalive_s: int = 60
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0
    ca_file: Path | None = None


@dataclass(frozen=True)
class AgentConfig:
    log_level: str = "info"
    pull: PullConfig = field(default_factory=PullConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def _number(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum:g}")
    return float(value)


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return str(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _known(section: str, table: object, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{section} must be a table")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(f"unknown key(s) in {section}: {', '.join(unknown)}")
    return table


def _pull(table: object) -> PullConfig:
    keys = {"backend", "images", "interval", "tls_verify", "platform", "output", "timeout"}
    t = _known("pull", table, keys | {"backoff_base", "backoff_cap"})
    d = PullConfig()
    images = t.get("images", [])
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise ConfigError("pull.images must be a list of image names")
    if len(images) > MAX_IMAGES:
        raise ConfigError(f"pull.images may name at most {MAX_IMAGES} images")
    base = _number("pull.backoff_base", t.get("backoff_base", d.backoff_base_s), 1.0)
    cap = _number("pull.backoff_cap", t.get("backoff_cap", d.backoff_cap_s), base)
    return PullConfig(
        backend=_choice("pull.backend", t.get("backend", d.backend), BACKENDS),
        images=tuple(images),
        interval_s=_number("pull.interval", t.get("interval", d.interval_s), MIN_INTERVAL_S),
        tls_verify=_flag("pull.tls_verify", t.get("tls_verify", d.tls_verify)),
        platform=_text("pull.platform", t.get("platform", d.platform)),
        output=Path(_text("pull.output", t["output"])) if "output" in t else None,
        timeout_s=_number("pull.timeout", t.get("timeout", d.timeout_s), 1.0),
        backoff_base_s=base,
        backoff_cap_s=cap,
    )


def _mqtt(table: object) -> MqttConfig:
    t = _known("mqtt", table, {"keepalive", "reconnect_min", "reconnect_max", "ca_file"})
    d = MqttConfig()
    low = _number("mqtt.reconnect_min", t.get("reconnect_min", d.reconnect_min_s), 0.01)
    return MqttConfig(
        keepalive_s=int(_number("mqtt.keepalive", t.get("keepalive", d.keepalive_s), 5)),
        reconnect_min_s=low,
        reconnect_max_s=_number(
            "mqtt.reconnect_max", t.get("reconnect_max", d.reconnect_max_s), low
        ),
        ca_file=Path(_text("mqtt.ca_file", t["ca_file"])) if "ca_file" in t else None,
    )


def parse_config(document: object) -> AgentConfig:
    top = _known("the configuration", document, {"log_level", "pull", "mqtt"})
    return AgentConfig(
        log_level=_choice("log_level", top.get("log_level", "info"), LOG_LEVELS),
        pull=_pull(top.get("pull", {})),
        mqtt=_mqtt(top.get("mqtt", {})),
    )


def load_config(path: Path | None) -> AgentConfig:
    """``path`` None: the default file if it exists, else defaults. A named file must exist."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return AgentConfig()
        path = DEFAULT_CONFIG_FILE
    try:
        data = path.read_bytes()[:MAX_CONFIG_BYTES]
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            document: object = tomllib.loads(data.decode("utf-8"))
        else:
            document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ConfigError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}"
        ) from None
    try:
        return parse_config(document)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
