"""``GET /metrics`` (fleet/api/metrics.py, fleet/metrics.py) through Flask's test client on
each database: off by default, a bearer token when on, and each counter moved by what it
counts (read as deltas: the counters belong to the test process)."""

from __future__ import annotations

import base64
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from fleet.app import create_app
from fleet.domain.errors import ValidationError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import make_settings
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker

TOKEN = "m" * 40
SERVICE = "fleet-registry"


@pytest.fixture
def metered(make_services) -> Services:  # type: ignore[no-untyped-def]
    built: Services = make_services(metrics_token=TOKEN)
    built.broker = FakeBroker()
    return built


@pytest.fixture
def client(metered: Services) -> FlaskClient:
    app: Flask = create_app(metered.ctx.settings, metered)
    return app.test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.content_type.startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def test_off_by_default_with_how_to_turn_it_on(services: Services) -> None:
    client = create_app(services.ctx.settings, services).test_client()
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 403
    assert "FLEET_METRICS_TOKEN" in answer.text and "deploy/README.md" in answer.text


@pytest.mark.parametrize(
    "header",
    [None, "Bearer ", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN],
)
def test_a_wrong_or_missing_token_is_401(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "fleet_" not in answer.text


def test_a_short_metrics_token_is_refused_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="FLEET_METRICS_TOKEN"):
        make_settings(tmp_path, metrics_token="short")


def test_token_requests_are_counted_by_outcome_with_their_latency(
    client: FlaskClient, metered: Services
) -> None:
    made = metered.tokens.create(
        "ci-puller", repositories=[RepositoryActions("app/*", ("content/read",))], actor="t"
    )
    password = made.passwords[0].value or ""
    before = scrape(client)
    asks = [
        (basic("ci-puller", password), {"service": SERVICE, "scope": "repository:app/x:pull"}),
        (basic("ci-puller", password), {"service": SERVICE}),
        (basic("ci-puller", "fltp_wrong"), {"service": SERVICE}),
        (basic("ci-puller", password), {"service": "another"}),
        ({}, {"service": SERVICE}),
    ]
    for headers, query in asks:
        client.get("/oauth2/token", query_string=query, headers=headers)
    client.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": "ci-puller",
            "password": password,
            "service": SERVICE,
        },
    )
    after = scrape(client)

    def moved(outcome: str) -> float:
        name = "fleet_token_requests_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert {o: moved(o) for o in ("granted", "bad_credentials", "bad_request", "throttled")} == {
        "granted": 3,
        "bad_credentials": 2,
        "bad_request": 1,
        "throttled": 0,
    }
    count = "fleet_token_request_seconds_count"
    assert value(after, count) - value(before, count) == 6
    assert value(after, "fleet_token_request_seconds_bucket", le="+Inf") >= 6


def test_enrollments_deliveries_and_passwords_are_counted(
    client: FlaskClient, metered: Services
) -> None:
    metered.scope_maps.create(
        "edge-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    metered.groups.create("pilots", scope_map="edge-read", actor="t")
    secret = metered.groups.create_secret("pilots", actor="t").value or ""
    before = scrape(client)
    pending_before = value(before, "fleet_deliveries_pending")
    device = new_device("rpi-0001")
    x, ed = device.keys
    body = {"deviceId": "rpi-0001", "x25519PublicKey": x, "ed25519PublicKey": ed}
    assert (
        client.post("/api/v1/enroll", json=body | {"enrollmentSecret": secret}).status_code == 201
    )
    refused = client.post("/api/v1/enroll", json=body | {"enrollmentSecret": "flte_wrong"})
    assert refused.status_code == 401
    middle = scrape(client)
    assert (
        value(middle, "fleet_enrollments_total", outcome="enrolled")
        - value(before, "fleet_enrollments_total", outcome="enrolled")
        == 1
    )
    assert (
        value(middle, "fleet_enrollments_total", outcome="bad_secret")
        - value(before, "fleet_enrollments_total", outcome="bad_secret")
        == 1
    )
    assert value(middle, "fleet_deliveries_pending") == pending_before + 1  # its first password
    issued = "fleet_device_passwords_issued_total"
    assert value(middle, issued) - value(before, issued) == 1

    version = metered.devices.show("rpi-0001").last_version
    ack = {"type": "ack", "kind": "credentials", "version": version}
    metered.delivery.handle_status("rpi-0001", json.dumps(ack).encode())
    after = scrape(client)
    assert value(after, "fleet_deliveries_pending") == pending_before
    acked = "fleet_deliveries_acknowledged_total"
    assert value(after, acked) - value(middle, acked) == 1


def test_the_broker_connection_is_one_state_of_three(client: FlaskClient) -> None:
    samples = scrape(client)
    states = {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "fleet_broker_connection"
    }
    assert set(states) == {"connected", "disconnected", "not_connected_yet", "not_configured"}
    assert states["not_configured"] == 1.0  # no FLEET_MQTT_URL in these tests
    assert sorted(states.values()) == [0.0, 0.0, 0.0, 1.0]


def test_no_label_names_a_device_or_a_token(client: FlaskClient, metered: Services) -> None:
    metered.tokens.create("secret-name", scope_map="_repositories_pull", actor="t")
    client.get("/oauth2/token", headers=basic("secret-name", "fltp_x"))
    labels = {k for (_, ls) in scrape(client) for k, _ in ls}
    assert labels <= {"outcome", "state", "le"}
    assert (
        "secret-name"
        not in client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    )
