"""The HTTP layer: the REST API under ``/api/v1`` (the blueprint of :mod:`fleet.api.rest`, with
the routes of the modules imported here) and, beside it, the Docker registry token endpoint
(:mod:`fleet.api.token_endpoint`, a blueprint of its own) and the broker's login questions in
``FLEET_MQTT_AUTH=http`` mode (:mod:`fleet.api.mqtt_auth`, one too)."""

from __future__ import annotations

# Routes register themselves on `api` when imported; they import the blueprint from
# fleet.api.rest, never from this package, so no module imports one that imports it back.
from fleet.api import access, devices, jobs, scheduler, scope_maps, tokens
from fleet.api.rest import PREFIX, PUBLIC_ENDPOINTS, api, blueprint

__all__ = [
    "PREFIX",
    "PUBLIC_ENDPOINTS",
    "access",
    "api",
    "blueprint",
    "devices",
    "jobs",
    "scheduler",
    "scope_maps",
    "tokens",
]
