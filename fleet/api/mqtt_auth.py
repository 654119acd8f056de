"""``/mqtt-auth/...``: the questions a broker asks fleet in ``FLEET_MQTT_AUTH=http`` mode.

The answers are :class:`fleet.services.mqtt_auth.MqttAuthService`'s; this module only speaks
each broker's contract (docs/mqtt-http-auth.md):

- RabbitMQ's ``rabbitmq_auth_backend_http`` (form-encoded POST, the body ``allow`` or
  ``deny``): ``/mqtt-auth/rabbitmq/user``, ``/vhost``, ``/resource``, ``/topic``. RabbitMQ 3.10
  sends the MQTT client id as ``client_id`` (user, vhost, resource) and
  ``variable_map.client_id`` (topic); both are required.
- EMQX's HTTP authentication and authorization (JSON in, ``{"result": "allow"|"deny"}`` out):
  ``/mqtt-auth/emqx/authn`` and ``/mqtt-auth/emqx/authz`` (not tested against EMQX here).
- VerneMQ's webhooks ``auth_on_register``, ``auth_on_subscribe``, ``auth_on_publish`` (not
  tested against VerneMQ here).

Only the broker may ask: every request must carry ``FLEET_MQTT_AUTH_SECRET`` (the query's
``secret=`` or the ``X-Fleet-Broker-Secret`` header; compared in constant time) and, when
``FLEET_MQTT_AUTH_ALLOWED_NETWORKS`` is set, come from one of those networks; otherwise 403.
In dynsec mode the routes answer 404. A body is at most ``MAX_BODY_BYTES``, a form at most
``MAX_FIELDS`` fields, each once. Nothing of a request is logged but the username.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from fleet.config import parse_networks
from fleet.domain.errors import ValidationError
from fleet.services import Services
from fleet.services.mqtt_auth import MqttAuthService

log = logging.getLogger(__name__)
blueprint = Blueprint("mqtt_auth", __name__, url_prefix="/mqtt-auth")
SECRET_HEADER = "X-Fleet-Broker-Secret"
SECRET_PARAMETER = "secret"
MAX_BODY_BYTES = 64 * 1024  # VerneMQ's auth_on_publish carries the payload (an envelope)
MAX_FIELDS = 32
MAX_SUBSCRIBE_TOPICS = 16
SERVICE_EXTENSION = "fleet.mqtt_auth"
ALLOW, DENY = "allow", "deny"


def _services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


def _service() -> MqttAuthService:
    service: MqttAuthService | None = current_app.extensions.get(SERVICE_EXTENSION)
    if service is None:
        service = MqttAuthService(_services().ctx)
        current_app.extensions[SERVICE_EXTENSION] = service
    return service


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _plain(status: int, body: str) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@blueprint.before_request
def _only_the_broker() -> Response | None:
    settings = _services().ctx.settings
    if settings.mqtt_auth != "http":
        return _plain(404, "FLEET_MQTT_AUTH is not http")
    networks = parse_networks(settings.mqtt_auth_allowed_networks)
    if networks:
        try:
            address = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return _plain(403, DENY)
        if not any(address in network for network in networks):
            log.warning("MQTT auth question from %s, outside the allowed networks", address)
            return _plain(403, DENY)
    given = request.headers.get(SECRET_HEADER) or request.args.get(SECRET_PARAMETER) or ""
    if not hmac.compare_digest(_digest(given), _digest(settings.mqtt_auth_secret)):
        log.warning("MQTT auth question from %s without the right secret", request.remote_addr)
        return _plain(403, DENY)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _plain(413, DENY)
    return None


def _form() -> dict[str, str]:
    """The form, bounded: at most MAX_FIELDS fields, each once."""
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError(f"the body is over {MAX_BODY_BYTES} bytes", code="TooLarge")
    form = request.form
    if len(form) > MAX_FIELDS:
        raise ValidationError(f"more than {MAX_FIELDS} fields", code="InvalidMqttQuestion")
    fields: dict[str, str] = {}
    for key in form:
        values = form.getlist(key)
        if len(values) != 1:
            raise ValidationError(
                f"field {key!r} given {len(values)} times", code="InvalidMqttQuestion"
            )
        fields[key] = values[0]
    return fields


def _json() -> dict[str, Any]:
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError(f"the body is over {MAX_BODY_BYTES} bytes", code="TooLarge")
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        raise ValidationError("the body is not JSON", code="InvalidMqttQuestion") from None
    if not isinstance(found, dict) or len(found) > MAX_FIELDS:
        raise ValidationError(
            f"the body must be a JSON object of at most {MAX_FIELDS} fields",
            code="InvalidMqttQuestion",
        )
    return found


def _text(fields: dict[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string", code="InvalidMqttQuestion")
    return value


def _answer(decide: Callable[[], bool], allowed: Any, denied: Any) -> Any:
    """``allowed`` or ``denied`` as decided; a bad question is a 400 saying why (and deny)."""
    try:
        return allowed if decide() else denied
    except ValidationError as error:
        log.info("bad MQTT auth question on %s: %s", request.path, error.message)
        if isinstance(denied, str):
            return _plain(400, f"{DENY} {error.message}")
        return jsonify({"result": DENY, "error": error.message}), 400


# -- RabbitMQ (rabbitmq_auth_backend_http) ----------------------------------------------------


@blueprint.post("/rabbitmq/user")
def rabbitmq_user() -> Any:
    def decide() -> bool:
        form = _form()
        return _service().login(form.get("username"), form.get("password"), form.get("client_id"))

    return _rabbit(decide)


@blueprint.post("/rabbitmq/vhost")
def rabbitmq_vhost() -> Any:
    def decide() -> bool:
        form = _form()
        return _service().may_use_vhost(
            form.get("username"), form.get("client_id"), form.get("vhost")
        )

    return _rabbit(decide)


@blueprint.post("/rabbitmq/resource")
def rabbitmq_resource() -> Any:
    def decide() -> bool:
        form = _form()
        return _service().may_use_resource(
            form.get("username"),
            form.get("client_id"),
            form.get("vhost"),
            form.get("resource"),
            form.get("name"),
            form.get("permission"),
        )

    return _rabbit(decide)


@blueprint.post("/rabbitmq/topic")
def rabbitmq_topic() -> Any:
    def decide() -> bool:
        form = _form()
        return _service().may_use_topic(
            form.get("username"),
            form.get("variable_map.client_id"),
            form.get("vhost"),
            form.get("name"),
            form.get("permission"),
            form.get("routing_key"),
        )

    return _rabbit(decide)


def _rabbit(decide: Callable[[], bool]) -> Any:
    found = _answer(decide, ALLOW, DENY)
    return found if not isinstance(found, str) else _plain(200, found)


# -- EMQX (HTTP authentication / authorization; not tested against EMQX here) ----------------


@blueprint.post("/emqx/authn")
def emqx_authn() -> Any:
    def decide() -> bool:
        body = _json()
        return _service().login(
            _text(body, "username"), _text(body, "password"), _text(body, "clientid")
        )

    return _answer(decide, jsonify({"result": ALLOW}), jsonify({"result": DENY}))


@blueprint.post("/emqx/authz")
def emqx_authz() -> Any:
    def decide() -> bool:
        body = _json()
        username, client_id = _text(body, "username"), _text(body, "clientid")
        action, topic = _text(body, "action"), _text(body, "topic")
        if action == "publish":
            return _service().may_publish(username, client_id, topic)
        if action == "subscribe":
            return _service().may_subscribe(username, client_id, topic)
        raise ValidationError("action must be publish or subscribe", code="InvalidMqttQuestion")

    return _answer(decide, jsonify({"result": ALLOW}), jsonify({"result": DENY}))


# -- VerneMQ (webhooks; not tested against VerneMQ here) --------------------------------------

VERNEMQ_OK = {"result": "ok"}
VERNEMQ_NOT_ALLOWED = {"result": {"error": "not_allowed"}}


@blueprint.post("/vernemq/auth_on_register")
def vernemq_register() -> Any:
    def decide() -> bool:
        body = _json()
        return _service().login(
            _text(body, "username"), _text(body, "password"), _text(body, "client_id")
        )

    return _answer(decide, jsonify(VERNEMQ_OK), jsonify(VERNEMQ_NOT_ALLOWED))


@blueprint.post("/vernemq/auth_on_subscribe")
def vernemq_subscribe() -> Any:
    def decide() -> bool:
        body = _json()
        wanted = body.get("topics")
        if not isinstance(wanted, list) or not 0 < len(wanted) <= MAX_SUBSCRIBE_TOPICS:
            raise ValidationError(
                f"topics must list 1 to {MAX_SUBSCRIBE_TOPICS} subscriptions",
                code="InvalidMqttQuestion",
            )
        username, client_id = _text(body, "username"), _text(body, "client_id")
        for item in wanted:
            if not isinstance(item, dict):
                raise ValidationError("each topic must be an object", code="InvalidMqttQuestion")
            if not _service().may_subscribe(username, client_id, _text(item, "topic")):
                return False
        return True

    return _answer(decide, jsonify(VERNEMQ_OK), jsonify(VERNEMQ_NOT_ALLOWED))


@blueprint.post("/vernemq/auth_on_publish")
def vernemq_publish() -> Any:
    def decide() -> bool:
        body = _json()
        return _service().may_publish(
            _text(body, "username"), _text(body, "client_id"), _text(body, "topic")
        )

    return _answer(decide, jsonify(VERNEMQ_OK), jsonify(VERNEMQ_NOT_ALLOWED))


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _plain(error.code or 400, DENY)
