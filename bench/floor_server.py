"""``fleet serve`` exactly as shipped, plus one benchmark-only route: the floor.

The floor answers ``GET /bench/floor-token`` with the token endpoint's own answer
(``fleet.api.token_endpoint.token_response``) around a JWT signed once per worker at
start-up: no credential look-up, no scope evaluation, no signing per request. The benchmark
sends it the very same query string and ``Authorization`` header as the endpoint, which it
ignores, so that the two differ only in what the handler does. Everything else (Flask app,
gunicorn settings, workers, access log) is the product's own, because this module only wraps
``fleet.app.create_app`` before handing the command line to the real ``fleet`` CLI::

    python -m bench.floor_server serve --host 127.0.0.1 --port 8181 --workers 2

It lives in ``bench/``, which is not part of the installed package: the product never has it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

import fleet.app
from fleet.api.token_endpoint import token_response

FLOOR_PATH = "/bench/floor-token"
FLOOR_SUBJECT = "bench-floor"
# The grant the floor's ready-made JWT carries: the same one the measured request gets.
FLOOR_REPOSITORY = "samples/hello-world"
FLOOR_SCOPE = f"repository:{FLOOR_REPOSITORY}:pull"

_product_create_app = fleet.app.create_app


def create_app_with_floor(*args: Any, **kwargs: Any) -> Flask:
    app = _product_create_app(*args, **kwargs)
    services = app.extensions["fleet"]
    access = [{"type": "repository", "name": FLOOR_REPOSITORY, "actions": ["pull"]}]
    minted = services.signing.registry_token(FLOOR_SUBJECT, access)
    scopes = [FLOOR_SCOPE]

    @app.get(FLOOR_PATH)
    def floor_token() -> Any:
        return token_response(minted, scopes)

    return app


def main() -> None:
    fleet.app.create_app = create_app_with_floor  # `fleet serve` imports it when a worker loads
    from fleet.cli import main as fleet_main

    fleet_main()


if __name__ == "__main__":
    main()
