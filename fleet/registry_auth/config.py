"""The ``auth: token:`` section of a Distribution registry's configuration."""

from __future__ import annotations

import yaml

from fleet.domain.errors import ValidationError

AUTH_BACKEND = "token"
REALM_SCHEMES = ("http://", "https://")
INVALID_CONFIG = "InvalidRegistryConfig"


def auth_section(
    realm: str, service: str, issuer: str, rootcertbundle: str
) -> dict[str, dict[str, dict[str, str]]]:
    """``{"auth": {"token": {...}}}``: the registry sends clients to ``realm`` for tokens and
    accepts those whose ``iss`` is ``issuer`` and ``aud`` is ``service``, signed by a key whose
    certificate is in ``rootcertbundle`` (read once, when the registry starts)."""
    if not realm.startswith(REALM_SCHEMES):
        raise ValidationError(
            f"realm {realm!r} must be an http:// or https:// URL", code=INVALID_CONFIG
        )
    for option, value in (
        ("service", service),
        ("issuer", issuer),
        ("rootcertbundle", rootcertbundle),
    ):
        if not value.strip():
            raise ValidationError(f"registry auth option {option} is empty", code=INVALID_CONFIG)
    token = {
        "realm": realm,
        "service": service,
        "issuer": issuer,
        "rootcertbundle": rootcertbundle,
    }
    return {"auth": {AUTH_BACKEND: token}}


def render_auth_config(realm: str, service: str, issuer: str, rootcertbundle: str) -> str:
    """The section as YAML, ready to paste into (or merge with) a registry ``config.yml``."""
    section = auth_section(realm, service, issuer, rootcertbundle)
    return yaml.safe_dump(section, default_flow_style=False, sort_keys=False)
