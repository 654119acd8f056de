"""The REST API's blueprint (``/api/v1``), its API-key check and its OpenAPI document. The
route modules (:mod:`fleet.api.devices`, :mod:`fleet.api.tokens`, ...) register on ``api``."""

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
