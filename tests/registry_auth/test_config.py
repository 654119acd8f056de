from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleet.domain.errors import ValidationError
from fleet.registry_auth.config import render_auth_config

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "config.yml"
REALM = "http://127.0.0.1:8080/oauth2/token"


def test_renders_the_token_auth_section() -> None:
    text = render_auth_config(REALM, "fleet-registry", "fleet", "/etc/fleet/bundle.pem")
    assert yaml.safe_load(text) == {
        "auth": {
            "token": {
                "realm": REALM,
                "service": "fleet-registry",
                "issuer": "fleet",
                "rootcertbundle": "/etc/fleet/bundle.pem",
            }
        }
    }


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (("127.0.0.1:8080/token", "s", "i", "/b.pem"), "realm"),
        (("ftp://x/token", "s", "i", "/b.pem"), "realm"),
        ((REALM, " ", "i", "/b.pem"), "service"),
        ((REALM, "s", "", "/b.pem"), "issuer"),
        ((REALM, "s", "i", ""), "rootcertbundle"),
    ],
)
def test_refuses_options_the_registry_could_not_use(
    arguments: tuple[str, str, str, str], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        render_auth_config(*arguments)
    assert caught.value.code == "InvalidRegistryConfig"
    assert fragment in caught.value.message


def test_the_shipped_registry_config_points_at_the_fleet_token_endpoint() -> None:
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    token = config["auth"]["token"]
    assert token["realm"] == REALM
    assert token["service"] == "fleet-registry"
    assert token["issuer"] == "fleet"
    assert token["rootcertbundle"].endswith(".pem")
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"]
    assert config["http"]["addr"].startswith("127.0.0.1:")
