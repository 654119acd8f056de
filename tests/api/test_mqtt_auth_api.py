"""/mqtt-auth/...: the broker's questions over HTTP (fleet/api/mqtt_auth.py) through Flask's
test client: RabbitMQ's form contract, EMQX's and VerneMQ's JSON, and who may ask."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet.app import create_app
from fleet.services import Services
from fleet.services.broker_login import SERVER_USERNAME, server_password
from tests.support.http_logins import HTTP_MODE, SECRET, client, enroll, http_fleet

RABBIT = "/mqtt-auth/rabbitmq"


@pytest.fixture
def fleet(make_services: Any) -> Services:
    return http_fleet(make_services)


@pytest.fixture
def app(fleet: Services) -> Flask:
    return create_app(fleet.ctx.settings, fleet)


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def ask(http: FlaskClient, path: str, secret: str = SECRET, **form: str) -> tuple[int, str]:
    answer = http.post(f"{RABBIT}/{path}?secret={secret}", data=form)
    return answer.status_code, answer.get_data(as_text=True)


def device_login(device_id: str, password: str) -> dict[str, str]:
    return {
        "username": device_id,
        "password": password,
        "vhost": "/",
        "client_id": client(device_id),
    }


def test_rabbitmq_user_vhost_resource_topic(http: FlaskClient, fleet: Services) -> None:
    password = enroll(fleet, "rpi-0001")
    assert ask(http, "user", **device_login("rpi-0001", password)) == (200, "allow")
    wrong = device_login("rpi-0001", password + "x")
    assert ask(http, "user", **wrong) == (200, "deny")
    me = {"username": "rpi-0001", "vhost": "/", "client_id": client("rpi-0001")}
    assert ask(http, "vhost", ip="127.0.0.1", **me) == (200, "allow")
    queue = "mqtt-subscription-fleet-agent-rpi-0001qos1"
    assert ask(http, "resource", resource="queue", name=queue, permission="configure", **me) == (
        200,
        "allow",
    )
    topic = {
        "username": "rpi-0001",
        "vhost": "/",
        "resource": "topic",
        "name": "amq.topic",
        "variable_map.client_id": client("rpi-0001"),
        "variable_map.username": "rpi-0001",
        "variable_map.vhost": "/",
    }
    status = "fleet.v1.devices.rpi-0001.status"
    assert ask(http, "topic", permission="write", routing_key=status, **topic) == (200, "allow")
    other = "fleet.v1.devices.rpi-0002.status"
    assert ask(http, "topic", permission="write", routing_key=other, **topic) == (200, "deny")
    # The topic question without the client id RabbitMQ 3.10 sends: refused, saying why.
    del topic["variable_map.client_id"]
    code, body = ask(http, "topic", permission="write", routing_key=status, **topic)
    assert code == 400 and body.startswith("deny client id is missing")


def test_a_disabled_device_is_refused_on_the_next_question(
    http: FlaskClient,
    fleet: Services,
) -> None:
    password = enroll(fleet, "rpi-0001")
    assert ask(http, "user", **device_login("rpi-0001", password))[1] == "allow"
    fleet.devices.disable("rpi-0001", actor="t")
    assert ask(http, "user", **device_login("rpi-0001", password))[1] == "deny"


def test_the_servers_own_login(http: FlaskClient, fleet: Services) -> None:
    login = {
        "username": SERVER_USERNAME,
        "password": server_password(fleet.ctx.hasher),
        "client_id": "fleet-server-00112233aabb",
    }
    assert ask(http, "user", **login) == (200, "allow")


@pytest.mark.parametrize("secret", ["", "wrong", SECRET + "x"])
def test_only_the_broker_may_ask(http: FlaskClient, fleet: Services, secret: str) -> None:
    password = enroll(fleet, "rpi-0001")
    assert ask(http, "user", secret=secret, **device_login("rpi-0001", password)) == (403, "deny")


def test_the_secret_may_come_as_a_header(http: FlaskClient, fleet: Services) -> None:
    password = enroll(fleet, "rpi-0001")
    answer = http.post(
        f"{RABBIT}/user",
        data=device_login("rpi-0001", password),
        headers={"X-Fleet-Broker-Secret": SECRET},
    )
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "allow")


def test_questions_from_outside_the_allowed_networks_are_refused(make_services: Any) -> None:
    services: Services = make_services(**HTTP_MODE, mqtt_auth_allowed_networks="10.9.0.0/16")
    http = create_app(services.ctx.settings, services).test_client()
    answer = http.post(f"{RABBIT}/user?secret={SECRET}", data={"username": "x"})
    assert answer.status_code == 403
    inside = http.post(
        f"{RABBIT}/user?secret={SECRET}",
        data={"username": "x", "password": "y", "client_id": "fleet-agent-x"},
        environ_base={"REMOTE_ADDR": "10.9.1.2"},
    )
    assert (inside.status_code, inside.get_data(as_text=True)) == (200, "deny")


def test_in_dynsec_mode_the_routes_are_off(make_services: Any) -> None:
    services: Services = make_services()
    http = create_app(services.ctx.settings, services).test_client()
    assert http.post(f"{RABBIT}/user?secret={SECRET}", data={}).status_code == 404


def test_bounds_repeated_fields_and_get(http: FlaskClient, fleet: Services) -> None:
    body = "&".join(f"f{i}=x" for i in range(40))
    answer = http.post(
        f"{RABBIT}/user?secret={SECRET}",
        data=body,
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 400 and "more than 32 fields" in answer.get_data(as_text=True)
    twice = http.post(
        f"{RABBIT}/user?secret={SECRET}",
        data="username=a&username=b&password=p&client_id=c",
        content_type="application/x-www-form-urlencoded",
    )
    assert twice.status_code == 400 and "given 2 times" in twice.get_data(as_text=True)
    huge = http.post(f"{RABBIT}/user?secret={SECRET}", data={"username": "u" * 70_000})
    assert huge.status_code == 413
    assert http.get(f"{RABBIT}/user?secret={SECRET}&username=a").status_code == 405


def test_emqx_authn_and_authz(http: FlaskClient, fleet: Services) -> None:
    password = enroll(fleet, "rpi-0001")
    url = f"/mqtt-auth/emqx/authn?secret={SECRET}"
    login = {"username": "rpi-0001", "password": password, "clientid": client("rpi-0001")}
    assert http.post(url, json=login).get_json() == {"result": "allow"}
    assert http.post(url, json={**login, "password": "no"}).get_json() == {"result": "deny"}
    authz = f"/mqtt-auth/emqx/authz?secret={SECRET}"
    ask_for = {"username": "rpi-0001", "clientid": client("rpi-0001")}
    publish = {**ask_for, "action": "publish", "topic": "fleet/v1/devices/rpi-0001/status"}
    assert http.post(authz, json=publish).get_json() == {"result": "allow"}
    subscribe = {**ask_for, "action": "subscribe", "topic": "fleet/v1/devices/+/status"}
    assert http.post(authz, json=subscribe).get_json() == {"result": "deny"}
    bad = http.post(authz, json={**ask_for, "action": "delete", "topic": "x"})
    assert bad.status_code == 400 and bad.get_json()["result"] == "deny"
    assert http.post(authz, data="[1]", content_type="application/json").status_code == 400


def test_vernemq_webhooks(http: FlaskClient, fleet: Services) -> None:
    password = enroll(fleet, "rpi-0001")
    base = "/mqtt-auth/vernemq"
    me = {"username": "rpi-0001", "client_id": client("rpi-0001")}
    ok, refused = {"result": "ok"}, {"result": {"error": "not_allowed"}}
    register = http.post(
        f"{base}/auth_on_register?secret={SECRET}", json={**me, "password": password}
    )
    assert register.get_json() == ok
    wrong = http.post(f"{base}/auth_on_register?secret={SECRET}", json={**me, "password": "x"})
    assert wrong.get_json() == refused
    own = [{"topic": "fleet/v1/devices/rpi-0001/credentials", "qos": 1}]
    subscribe = f"{base}/auth_on_subscribe?secret={SECRET}"
    assert http.post(subscribe, json={**me, "topics": own}).get_json() == ok
    wider = [*own, {"topic": "#", "qos": 1}]
    assert http.post(subscribe, json={**me, "topics": wider}).get_json() == refused
    publish = f"{base}/auth_on_publish?secret={SECRET}"
    status = {**me, "topic": "fleet/v1/devices/rpi-0001/status", "qos": 1, "payload": ""}
    assert http.post(publish, json=status).get_json() == ok
    assert http.post(publish, json={**status, "topic": "a/b"}).get_json() == refused
