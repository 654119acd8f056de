"""The one place where domain errors become HTTP answers: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from fleet.domain.errors import (
    AuthenticationError,
    ConflictError,
    FleetError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    TooManyRequestsError,
    ValidationError,
)
from fleet.mqtt.errors import BrokerError, BrokerUnavailableError

log = logging.getLogger(__name__)

STATUS_OF: tuple[tuple[type[FleetError], int], ...] = (
    (BrokerUnavailableError, 503),
    (BrokerError, 502),
    (ValidationError, 400),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (ReadOnlyError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (LimitExceededError, 409),
    (TooManyRequestsError, 429),
)


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def status_of(exc: FleetError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 500


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FleetError)
    def _fleet(exc: FleetError) -> tuple[Response, int]:
        response, status = error_response(status_of(exc), exc.code, exc.message)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="fleet"'
        if isinstance(exc, TooManyRequestsError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, status

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = request.max_content_length
        response, status = error_response(
            413, "RequestTooLarge", f"the request body is larger than the limit of {limit} bytes"
        )
        response.headers["Connection"] = "close"  # the rest of the body is never read
        return response, status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "Error").replace(" ", "")
        return error_response(exc.code or 500, code, exc.description or code)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        return error_response(500, "InternalError", "an unexpected error occurred; see the log")
