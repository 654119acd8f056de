"""Configuration from ``FLEET_*`` environment variables, optionally added to by a file.

The file (``FLEET_CONFIG_FILE``, TOML) may hold the same keys, lowercased and without the
prefix (``registry_name = "myregistry"``); the environment wins over the file.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fleet.domain.errors import ValidationError
from fleet.registry_auth.tokens import MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME

ENV_PREFIX = "FLEET_"
UI_BOUNDS = (
    ("ui_idle_timeout_minutes", 1, 24 * 60),
    ("ui_session_lifetime_hours", 1, 24 * 30),
    ("health_flush_seconds", 1, 300),
    ("max_request_bytes", 1024, 64 * 1024 * 1024),
    # The warning webhook's outbox (fleet/services/outbox.py).
    ("webhook_timeout_seconds", 1, 30),
    ("webhook_interval_seconds", 1, 3600),
    ("webhook_max_attempts", 1, 50),
    ("webhook_max_age_hours", 1, 24 * 30),
    ("webhook_outbox_max_rows", 10, 1_000_000),
    ("webhook_sent_retention_hours", 1, 24 * 30),
)
MIN_METRICS_TOKEN_CHARS = 32
# Settings that take one of a few words.
CREDENTIAL_CACHE_CHOICES = ("on", "off")
# How device logins reach the broker (issue 15): dynamic security, or the broker asks fleet.
MQTT_AUTH_CHOICES = ("dynsec", "http")
# The server's MQTT protocol: "auto" is 5 with dynsec and 3.1.1 with http (RabbitMQ 3.10).
MQTT_PROTOCOL_CHOICES = ("auto", "5", "3.1.1")
CHOICES = (
    ("credential_cache", CREDENTIAL_CACHE_CHOICES),
    ("mqtt_auth", MQTT_AUTH_CHOICES),
    ("mqtt_protocol", MQTT_PROTOCOL_CHOICES),
)
MIN_MQTT_AUTH_SECRET_CHARS = 24
# Device status handling and retention (issue 12, defect 7).
LIMIT_BOUNDS = (
    ("status_burst", 1, 1000),
    ("status_per_minute", 1, 6000),
    ("status_report_seconds", 1, 3600),
    ("reissue_limit", 1, 100),
    ("reissue_window_seconds", 10, 7 * 24 * 3600),
    ("delivery_retention_days", 1, 3650),
    ("audit_retention_days", 1, 3650),
    ("retention_interval_seconds", 60, 7 * 24 * 3600),
    ("mqtt_auth_cache_ttl_seconds", 0, 3600),
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("fleet-data")
    database_url: str = ""
    registry_name: str = "myregistry"
    # A 32+ byte secret for the keyed hashes of passwords and API keys, and the key that seals
    # the signing keys kept in the database; from secret_key_file (a file the operator gives,
    # never created), else the data directory's secret.key. Every server on one database must
    # be given the same one (deploy/README.md, "Several servers").
    secret_key: str = ""
    secret_key_file: str = ""
    # The registry's token authentication (Distribution's auth.token section).
    registry_service: str = "fleet-registry"
    token_issuer: str = "fleet"
    token_lifetime: int = 300
    key_publish_delay: int = 300
    # Soft limit on failed registry logins, per token name and per client address.
    login_failure_burst: int = 10
    login_failure_refill_per_min: int = 12
    # The token endpoint keeps each token's look-up per process until a credential changes
    # (fleet/services/credential_cache.py); "off" reads the database on every request.
    credential_cache: str = "on"
    # Devices: the registry they pull from and the broker that carries their credentials.
    registry_login_server: str = "127.0.0.1:5000"
    public_url: str = "http://127.0.0.1:8080"  # this server, as devices reach it
    mqtt_url: str = ""  # the server's own connection, e.g. mqtt://127.0.0.1:1883
    mqtt_device_url: str = ""  # what devices are told; defaults to mqtt_url
    mqtt_admin_username: str = ""
    mqtt_admin_password: str = ""
    mqtt_ca_file: str = ""  # CA bundle for mqtts:// brokers
    # "dynsec": logins made on mosquitto's dynamic security; "http": the broker asks fleet
    # (/mqtt-auth/..., docs/mqtt-http-auth.md), which answers from the database.
    mqtt_auth: str = "dynsec"
    mqtt_protocol: str = "auto"
    # http mode: the secret the broker sends with every question (the query's ``secret=`` or
    # the X-Fleet-Broker-Secret header); optionally, the only addresses it may ask from
    # (comma-separated networks, e.g. "10.0.0.0/24,127.0.0.1/32"); the vhost devices use.
    mqtt_auth_secret: str = ""
    mqtt_auth_allowed_networks: str = ""
    mqtt_vhost: str = "/"
    # How long the broker may cache an answer (rabbitmq_auth_backend_cache's cache_ttl): after
    # a disable, fleet closes the device's connections at once and once more after this long.
    mqtt_auth_cache_ttl_seconds: int = 30
    # RabbitMQ's management API, to close a disabled or deleted device's connections.
    mqtt_management_url: str = ""
    mqtt_management_username: str = ""
    mqtt_management_password: str = ""
    # The scheduler (reconciler) and what it watches for.
    scheduler_enabled: str = "true"
    scheduler_interval_seconds: int = 60
    retire_grace_seconds: int = 300  # keep the old slot this long after the new one is acked
    expiry_warning_days: int = 3
    warning_webhook_url: str = ""
    # The webhook is sent from an outbox, off the pass: each try waits this long for an answer,
    # the sender looks for due events this often, and an event is given up after this many
    # tries or this age. At most this many events wait; sent ones are kept this long.
    webhook_timeout_seconds: int = 3
    webhook_interval_seconds: int = 10
    webhook_max_attempts: int = 12
    webhook_max_age_hours: int = 24
    webhook_outbox_max_rows: int = 10_000
    webhook_sent_retention_hours: int = 24
    # The dashboard: a session ends after this long without a request, and after the lifetime.
    ui_idle_timeout_minutes: int = 30
    ui_session_lifetime_hours: int = 12
    # How often each process writes what it saw of registry logins (last used, failures).
    health_flush_seconds: int = 5
    # Device status: each device's messages, per kind (hello, ack, reject, pull), are handled
    # at most this fast (a burst, then so many a minute); what is dropped above that is
    # recorded once per device per report window.
    status_burst: int = 20
    status_per_minute: int = 30
    status_report_seconds: int = 60
    # At most this many passwords minted for one device (its credential deliveries, counted
    # in the database) per window: a refusal beyond that is recorded, not acted on.
    reissue_limit: int = 5
    reissue_window_seconds: int = 3600
    # The scheduler's leader prunes finished deliveries and audit events older than these.
    delivery_retention_days: int = 30
    audit_retention_days: int = 400
    retention_interval_seconds: int = 3600
    max_tokens: int = 50_000
    max_scope_maps: int = 50_000
    max_scope_map_entries: int = 500
    # The largest request body any route reads (413 above it); the token endpoint reads less.
    max_request_bytes: int = 1024 * 1024
    # GET /metrics answers only a scraper sending this as a bearer token (off when empty).
    metrics_token: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def mqtt_protocol_version(self) -> str:
        """The server's MQTT protocol: "5" or "3.1.1" (``mqtt_protocol``, or from the mode)."""
        if self.mqtt_protocol != "auto":
            return self.mqtt_protocol
        return "3.1.1" if self.mqtt_auth == "http" else "5"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'fleet.db'}"

    @property
    def secret_key_path(self) -> Path:
        """Where the secret key is read from: ``secret_key_file``, else ``secret.key`` in the
        data directory (which ``fleet init`` writes when it is missing)."""
        return Path(self.secret_key_file) if self.secret_key_file else self.data_dir / "secret.key"

    @property
    def signing_key_dir(self) -> Path:
        """Where releases before the shared keys kept the JWT key ring; ``fleet init`` moves
        its ``keyring.json`` into the database (fleet/services/shared_keys.py)."""
        return self.data_dir / "signing-keys"

    @property
    def envelope_key_file(self) -> Path:
        """Where releases before the shared keys kept the Ed25519 envelope signing key;
        ``fleet init`` moves it into the database."""
        return self.data_dir / "envelope-signing.key"

    @property
    def registry_bundle_file(self) -> Path:
        """The certificates a registry trusts (its ``rootcertbundle``)."""
        return self.data_dir / "registry-bundle.pem"


MAX_ALLOWED_NETWORKS = 64
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``FLEET_MQTT_AUTH_ALLOWED_NETWORKS``: comma-separated networks (empty: any address)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) > MAX_ALLOWED_NETWORKS:
        raise ValidationError(
            f"{ENV_PREFIX}MQTT_AUTH_ALLOWED_NETWORKS lists {len(items)} networks; at most "
            f"{MAX_ALLOWED_NETWORKS}",
            code="InvalidConfiguration",
        )
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as error:
        raise ValidationError(
            f"{ENV_PREFIX}MQTT_AUTH_ALLOWED_NETWORKS: {error}", code="InvalidConfiguration"
        ) from None


def _convert(name: str, raw: Any, kind: Any) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (Path, "Path"):
            return Path(str(raw))
    except ValueError:
        raise ValidationError(
            f"configuration {ENV_PREFIX}{name.upper()}={raw!r} is not a valid number",
            code="InvalidConfiguration",
        ) from None
    return str(raw)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG_FILE")
    if config_file:
        with open(config_file, "rb") as fh:
            values.update({k.lower(): v for k, v in tomllib.load(fh).items()})
    known = {f.name: f.type for f in fields(Settings) if f.name != "extra"}
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in known:
                values[name] = raw
    values.update(overrides or {})
    extra = {k: str(v) for k, v in values.items() if k not in known and k != "config_file"}
    kwargs = {k: _convert(k, v, known[k]) for k, v in values.items() if k in known}
    settings = Settings(**kwargs, extra=extra)
    if not MIN_TOKEN_LIFETIME <= settings.token_lifetime <= MAX_TOKEN_LIFETIME:
        raise ValidationError(
            f"{ENV_PREFIX}TOKEN_LIFETIME={settings.token_lifetime} is outside "
            f"{MIN_TOKEN_LIFETIME} to {MAX_TOKEN_LIFETIME} s",
            code="InvalidConfiguration",
        )
    if settings.metrics_token and len(settings.metrics_token) < MIN_METRICS_TOKEN_CHARS:
        raise ValidationError(
            f"{ENV_PREFIX}METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS} characters "
            "(for example `openssl rand -hex 32`)",
            code="InvalidConfiguration",
        )
    for name, allowed in CHOICES:
        if getattr(settings, name) not in allowed:
            raise ValidationError(
                f"{ENV_PREFIX}{name.upper()}={getattr(settings, name)!r} is not one of "
                f"{', '.join(allowed)}",
                code="InvalidConfiguration",
            )
    if settings.mqtt_auth == "http" and len(settings.mqtt_auth_secret) < MIN_MQTT_AUTH_SECRET_CHARS:
        raise ValidationError(
            f"{ENV_PREFIX}MQTT_AUTH=http needs {ENV_PREFIX}MQTT_AUTH_SECRET of at least "
            f"{MIN_MQTT_AUTH_SECRET_CHARS} characters (the broker sends it with each question)",
            code="InvalidConfiguration",
        )
    parse_networks(settings.mqtt_auth_allowed_networks)
    for name, low, high in (*UI_BOUNDS, *LIMIT_BOUNDS):
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ValidationError(
                f"{ENV_PREFIX}{name.upper()}={value} is outside {low} to {high}",
                code="InvalidConfiguration",
            )
    return settings
