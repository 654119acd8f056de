"""Operators authenticate with bearer API keys."""

from __future__ import annotations

from flask import current_app, g, request

from fleet.domain.errors import AuthenticationError
from fleet.services import Services


def services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


def require_api_key() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError(
            "send an API key as 'Authorization: Bearer <key>' (create one with "
            "`fleet admin create-key --name NAME` on the server)"
        )
    name = services().api_keys.authenticate(value.strip())
    if name is None:
        raise AuthenticationError("the API key is not valid or has been revoked")
    g.actor = f"api-key:{name}"


def actor() -> str:
    found: str = g.get("actor", "anonymous")
    return found
