"""The operator's dashboard under ``/ui/`` (``/`` redirects there)."""

from __future__ import annotations

from flask import Flask, redirect, url_for
from werkzeug.wrappers import Response

from fleet.services import Services
from fleet.web.blueprint import web
from fleet.web.session import init_sessions
from fleet.web.views import (  # noqa: F401  (they register their routes on `web`)
    access,
    audit,
    auth,
    devices,
    enrollment,
    groups,
    overview,
    scope_maps,
    tokens,
)


def init_app(app: Flask, services: Services) -> None:
    init_sessions(app, services)
    app.register_blueprint(web)

    @app.get("/")
    def root() -> Response:
        return redirect(url_for("web.home"))
