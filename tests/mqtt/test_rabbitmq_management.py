"""fleet/mqtt/rabbitmq_management.py against a small HTTP server on loopback that stands in for
RabbitMQ's management API (the real one is in tests/e2e/delivery, on the RabbitMQ node)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet.mqtt.errors import BrokerError
from fleet.mqtt.rabbitmq_management import CLOSE_REASON, RabbitManagement


class Api(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str, str]] = []
    listed: bytes = b"[]"
    delete_status = 204

    def _record(self) -> None:
        Api.seen.append(
            (
                self.command,
                self.path,
                self.headers.get("Authorization", ""),
                self.headers.get("X-Reason", ""),
            )
        )

    def do_GET(self) -> None:
        self._record()
        self.send_response(200)
        self.send_header("Content-Length", str(len(Api.listed)))
        self.end_headers()
        self.wfile.write(Api.listed)

    def do_DELETE(self) -> None:
        self._record()
        self.send_response(Api.delete_status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    Api.seen, Api.listed, Api.delete_status = [], b"[]", 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_users_connections_are_closed_by_the_per_user_resource(api: str) -> None:
    Api.listed = json.dumps([{"name": "127.0.0.1:1 -> 127.0.0.1:2", "user": "pi/1"}]).encode()
    closed = RabbitManagement(api, "admin", "pw").close_user_connections("pi/1")
    assert closed == 1
    token = "Basic " + base64.b64encode(b"admin:pw").decode()
    assert Api.seen == [
        ("GET", "/api/connections/username/pi%2F1", token, ""),
        ("DELETE", "/api/connections/username/pi%2F1", token, CLOSE_REASON),
    ]


def test_none_gone_meanwhile_is_fine(api: str) -> None:
    Api.delete_status = 404
    assert RabbitManagement(api, "admin", "pw").close_user_connections("pi-1") == 0


def test_a_refusal_is_a_broker_error_naming_no_credentials(api: str) -> None:
    Api.delete_status = 401
    with pytest.raises(BrokerError, match="HTTP 401") as raised:
        RabbitManagement(api, "admin", "s3cret").close_user_connections("pi-1")
    assert "s3cret" not in str(raised.value)


def test_an_answer_that_is_not_a_list_is_an_error(api: str) -> None:
    Api.listed = b'{"error": "x"}'
    with pytest.raises(BrokerError, match="not a list"):
        RabbitManagement(api, "admin", "pw").user_connections("pi-1")


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        RabbitManagement("file:///etc/passwd", "a", "b")
