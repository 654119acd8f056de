"""The HTTP layer: the REST API under ``/api/v1`` (this blueprint) and, beside it, the Docker
registry token endpoint (:mod:`fleet.api.token_endpoint`, a blueprint of its own)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from fleet.api.auth import require_api_key
from fleet.api.openapi import Api

PREFIX = "/api/v1"
PUBLIC_ENDPOINTS = {"api_v1.openapi_document", "api_v1.enroll_post"}

blueprint = Blueprint("api_v1", __name__, url_prefix=PREFIX)
api = Api(blueprint, title="fleet", version="1")


@blueprint.before_request
def _authenticate() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        require_api_key()


@blueprint.get("/openapi.json")
def openapi_document() -> Any:
    return jsonify(api.document(PREFIX))


# Routes register themselves on `api` when imported.
from fleet.api import access, devices, scheduler, scope_maps, tokens  # noqa: E402

__all__ = ["access", "api", "blueprint", "devices", "scheduler", "scope_maps", "tokens"]
