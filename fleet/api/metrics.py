"""``GET /metrics``: the Prometheus text format, every gunicorn worker's counters summed.

Off unless ``FLEET_METRICS_TOKEN`` is set: then the scraper must send it as a bearer token,
compared in constant time (as digests, so its length leaks nothing either). Besides the
counters each worker writes (``fleet.metrics``), two values are read when scraped: the
deliveries pending (one indexed count in the database) and the broker connection of the
worker that answers (this worker's: each has its own).

The token endpoint's and the enrollment route's answers are counted by ``instrument``: an
app-wide hook that looks at the endpoint's name only, so neither route changes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request

from fleet.metrics import MULTIPROC_ENV, enroll_outcome, metrics, token_outcome
from fleet.services import Services
from fleet.services.overview import broker_state

blueprint = Blueprint("metrics", __name__)
TOKEN_ENDPOINTS = frozenset({"registry_token.token_get", "registry_token.token_post"})
ENROLL_ENDPOINT = "api_v1.enroll_post"
BROKER_STATES = ("connected", "disconnected", "not connected yet", "not configured")
OFF_MESSAGE = (
    "metrics are off: set FLEET_METRICS_TOKEN on the server to a secret of at least 32 "
    "characters (for example `openssl rand -hex 32`) and have Prometheus send it "
    "(`authorization: {credentials: ...}` in its scrape config; see deploy/README.md)\n"
)


def _services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _allowed(expected: str) -> bool:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_digest(offered.strip()), _digest(expected))


class _Scrape:
    """What one scrape answers: the counters (every worker's, or this process's) and the
    values read now."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        if os.environ.get(MULTIPROC_ENV):
            yield from MultiProcessCollector(None).collect()
        else:
            yield from metrics().registry.collect()
        pending = GaugeMetricFamily(
            "fleet_deliveries_pending", "Deliveries not yet acknowledged by their device"
        )
        pending.add_metric([], self.services.delivery.pending_count())
        yield pending
        state = broker_state(self.services.ctx.settings.mqtt_url, self.services.broker).state
        broker = GaugeMetricFamily(
            "fleet_broker_connection",
            "The answering worker's broker connection: 1 for its state, 0 for the others",
            labels=["state"],
        )
        for name in BROKER_STATES:
            broker.add_metric([name.replace(" ", "_")], 1.0 if state == name else 0.0)
        yield broker


@blueprint.get("/metrics")
def scrape() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    services = _services()
    expected = services.ctx.settings.metrics_token
    if not expected:
        return Response(OFF_MESSAGE, status=403, mimetype="text/plain")
    if not _allowed(expected):
        return Response(
            "send the metrics token as 'Authorization: Bearer <FLEET_METRICS_TOKEN>'\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="fleet-metrics"'},
        )
    body = generate_latest(_Scrape(services))  # type: ignore[arg-type]
    return Response(
        body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], content_type=CONTENT_TYPE_LATEST
    )


def _started() -> None:
    if request.endpoint in TOKEN_ENDPOINTS:
        g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    endpoint = request.endpoint
    if endpoint in TOKEN_ENDPOINTS:
        found = metrics()
        found.token_requests.labels(token_outcome(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            found.token_seconds.observe(time.perf_counter() - started)
    elif endpoint == ENROLL_ENDPOINT:
        metrics().enrollments.labels(enroll_outcome(response.status_code)).inc()
    return response


def instrument(app: Flask) -> None:
    """Register ``/metrics`` and the counting hooks on ``app``."""
    app.register_blueprint(blueprint)
    app.before_request(_started)
    app.after_request(_answered)
