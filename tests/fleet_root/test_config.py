from pathlib import Path

import pytest

from fleet.config import load_settings
from fleet.domain.errors import ValidationError


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.data_dir == Path("fleet-data")
    assert settings.registry_name == "myregistry"
    assert (settings.max_tokens, settings.max_scope_maps, settings.max_scope_map_entries) == (
        50_000,
        50_000,
        500,
    )
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("fleet-data/fleet.db")


def test_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('registry_name = "fromfile"\nmax_tokens = 10\ndata_dir = "/srv/fleet"\n')
    settings = load_settings(
        environ={
            "FLEET_CONFIG_FILE": str(config),
            "FLEET_MAX_TOKENS": "20",
            "FLEET_DATABASE_URL": "postgresql://u@h/db",
            "OTHER": "ignored",
        }
    )
    assert settings.registry_name == "fromfile"
    assert settings.max_tokens == 20  # the environment wins over the file
    assert settings.data_dir == Path("/srv/fleet")
    assert settings.resolved_database_url == "postgresql://u@h/db"


def test_bad_number_is_a_clear_error() -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(environ={"FLEET_MAX_TOKENS": "lots"})
    assert "FLEET_MAX_TOKENS" in info.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STATUS_BURST", "0"),
        ("STATUS_PER_MINUTE", "6001"),
        ("STATUS_REPORT_SECONDS", "0"),
        ("REISSUE_LIMIT", "0"),
        ("REISSUE_LIMIT", "1000000"),
        ("REISSUE_WINDOW_SECONDS", "9"),
        ("DELIVERY_RETENTION_DAYS", "0"),
        ("AUDIT_RETENTION_DAYS", "99999999999"),
        ("RETENTION_INTERVAL_SECONDS", "1"),
    ],
)
def test_status_reissue_and_retention_settings_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=f"FLEET_{name}={value} is outside"):
        load_settings(environ={f"FLEET_{name}": value})


def test_status_reissue_and_retention_defaults() -> None:
    settings = load_settings(environ={})
    assert (settings.status_burst, settings.status_per_minute) == (20, 30)
    assert (settings.reissue_limit, settings.reissue_window_seconds) == (5, 3600)
    assert (settings.delivery_retention_days, settings.audit_retention_days) == (30, 400)


@pytest.mark.parametrize(("raw", "expected"), [(None, "on"), ("on", "on"), ("off", "off")])
def test_the_credential_cache_setting(raw: str | None, expected: str) -> None:
    environ = {} if raw is None else {"FLEET_CREDENTIAL_CACHE": raw}
    assert load_settings(environ=environ).credential_cache == expected


@pytest.mark.parametrize("raw", ["", "yes", "OFF", "true", "0"])
def test_a_bad_credential_cache_setting_is_a_clear_error(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(environ={"FLEET_CREDENTIAL_CACHE": raw})
    assert info.value.message == f"FLEET_CREDENTIAL_CACHE={raw!r} is not one of on, off"


MQTT_AUTH_SECRET = "k" * 24


def test_mqtt_auth_defaults_to_dynsec_on_mqtt_5() -> None:
    settings = load_settings(environ={})
    assert settings.mqtt_auth == "dynsec"
    assert settings.mqtt_protocol_version == "5"


def test_http_mode_speaks_mqtt_311_unless_told() -> None:
    env = {"FLEET_MQTT_AUTH": "http", "FLEET_MQTT_AUTH_SECRET": MQTT_AUTH_SECRET}
    assert load_settings(environ=env).mqtt_protocol_version == "3.1.1"
    told = load_settings(environ={**env, "FLEET_MQTT_PROTOCOL": "5"})
    assert told.mqtt_protocol_version == "5"


@pytest.mark.parametrize("raw", ["HTTP", "ldap", ""])
def test_a_bad_mqtt_auth_setting_is_a_clear_error(raw: str) -> None:
    with pytest.raises(ValidationError, match=r"FLEET_MQTT_AUTH=.* is not one of dynsec, http"):
        load_settings(environ={"FLEET_MQTT_AUTH": raw})


@pytest.mark.parametrize("secret", ["", "short"])
def test_http_mode_needs_a_long_enough_broker_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="FLEET_MQTT_AUTH_SECRET of at least 24"):
        load_settings(environ={"FLEET_MQTT_AUTH": "http", "FLEET_MQTT_AUTH_SECRET": secret})


def test_the_allowed_networks_are_checked_when_loaded() -> None:
    ok = load_settings(environ={"FLEET_MQTT_AUTH_ALLOWED_NETWORKS": "10.0.0.0/24, ::1"})
    assert ok.mqtt_auth_allowed_networks == "10.0.0.0/24, ::1"
    with pytest.raises(ValidationError, match="MQTT_AUTH_ALLOWED_NETWORKS"):
        load_settings(environ={"FLEET_MQTT_AUTH_ALLOWED_NETWORKS": "10.0.0.0/33"})
    with pytest.raises(ValidationError, match="at most 64"):
        load_settings(environ={"FLEET_MQTT_AUTH_ALLOWED_NETWORKS": ",".join(["::1"] * 65)})


def test_the_auth_cache_ttl_is_bounded() -> None:
    with pytest.raises(ValidationError, match="MQTT_AUTH_CACHE_TTL_SECONDS=3601"):
        load_settings(environ={"FLEET_MQTT_AUTH_CACHE_TTL_SECONDS": "3601"})
