"""A real `fleet serve` in FLEET_MQTT_AUTH=http mode, asked as RabbitMQ asks (the broker secret
in the URL): the access log shows the request with the secret redacted, never the secret."""

from __future__ import annotations

import secrets
from pathlib import Path

import requests

from fleet.access_log import REDACTED
from tests.e2e.fleet_process import FleetServer
from tests.support.ports import free_port
from tests.support.timing import scaled, wait_until

REQUEST_TIMEOUT_S = 10.0  # unscaled; a bound on a failure


def test_the_broker_secret_never_reaches_the_access_log(tmp_path: Path) -> None:
    broker_secret = "broker-" + secrets.token_urlsafe(24)
    env = {
        "FLEET_MQTT_AUTH": "http",
        "FLEET_MQTT_AUTH_SECRET": broker_secret,
        "FLEET_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",  # never reached by this test
    }
    with FleetServer(tmp_path, env=env) as server:
        answer = requests.post(
            f"{server.url}/mqtt-auth/rabbitmq/user",
            params={"secret": broker_secret},
            data={"username": "nobody", "password": "wrong", "client_id": "fleet-agent-nobody"},
            timeout=scaled(REQUEST_TIMEOUT_S),
        )
        assert answer.status_code == 200, answer.text
        assert answer.text.startswith("deny")
        wait_until(
            lambda: "/mqtt-auth/rabbitmq/user" in server.log_tail(), "the request to be logged"
        )
        log = server.log_file.read_text(encoding="utf-8", errors="replace")
    assert f"/mqtt-auth/rabbitmq/user?secret={REDACTED}" in log
    assert broker_secret not in log
