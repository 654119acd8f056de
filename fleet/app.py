"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify

from fleet.body_limit import bound_streamed_body
from fleet.bootstrap import build_services
from fleet.config import Settings, load_settings
from fleet.http_errors import register_error_handlers
from fleet.input_guard import refuse_nul_characters
from fleet.services import Services
from fleet.web import init_app as init_web


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the server. With no arguments, configuration comes from ``FLEET_*`` variables."""
    settings = settings or load_settings()
    services = services or build_services(settings)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Every body is bounded before it is read: above the limit, 413 and nothing parsed.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.before_request(bound_streamed_body)
    app.before_request(refuse_nul_characters)
    app.extensions["fleet"] = services
    register_error_handlers(app)

    from fleet.api import blueprint as api_blueprint
    from fleet.api.metrics import instrument as instrument_metrics
    from fleet.api.mqtt_auth import blueprint as mqtt_auth_blueprint
    from fleet.api.token_endpoint import blueprint as token_blueprint

    app.register_blueprint(api_blueprint)
    app.register_blueprint(token_blueprint)
    app.register_blueprint(mqtt_auth_blueprint)
    instrument_metrics(app)  # GET /metrics, and the token endpoint's and enrollment's counts
    init_web(app, services)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    if settings.scheduler_enabled.lower() in ("1", "true", "yes", "on"):
        from fleet.scheduler import FleetScheduler

        scheduler = FleetScheduler(services)
        scheduler.start()
        app.extensions["fleet.scheduler"] = scheduler
    logging.getLogger("fleet").setLevel(logging.INFO)
    return app
