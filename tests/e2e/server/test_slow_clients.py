"""Issue 12, defect 5: slow and idle connections must not stop ``fleet serve``.

With gunicorn's sync workers (two by default) two sockets that sent half a request held both
workers, and ``/healthz`` went unanswered. Here a real ``fleet serve`` on its defaults (two
workers), except a short header timeout so that the test need not wait the default 10 s, gets
256 connections of each bad kind: idle (connected, nothing sent), a partial request and then
silence, and a header trickled one byte every 0.5 s, forever. Meanwhile ``/healthz`` and a real
token request must each answer within a second, many times over; and the server must close every
slow socket once the header timeout has passed.
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.e2e.fleet_process import FleetServer
from tests.e2e.stack import SERVER_ENV, SERVICE
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

PER_KIND = 256
HEADER_TIMEOUT_S = 4
KEEPALIVE_S = 2
ANSWER_WITHIN_S = 1.0
PROBE_FOR_S = 5.0
PROBE_EVERY_S = 0.25
TRICKLE_EVERY_S = 0.5
REPOSITORY = "samples/slow-clients"
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nX-Partial: "


ENV = {
    **SERVER_ENV,
    "FLEET_SERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S),
    "FLEET_SERVE_KEEPALIVE": str(KEEPALIVE_S),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with FleetServer(tmp_path_factory.mktemp("slow-clients"), env=ENV) as server:
        yield server


@pytest.fixture(scope="module")
def token(server: FleetServer) -> tuple[str, str]:
    return _token(server)


@pytest.fixture
def enough_files() -> None:
    """Three kinds of 256 sockets, plus the probes, in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * PER_KIND + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"open file limit {hard} < {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _token(server: FleetServer) -> tuple[str, str]:
    made = server.cli_ok(
        "token", "create", "--name", "SlowClients", "--registry", "myregistry",
        "--repository", REPOSITORY, "content/read", "--output", "json",
    ).json()  # fmt: skip
    return "SlowClients", made["credentials"]["passwords"][0]["value"]


def _connect(server: FleetServer, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=scaled(5.0))
    if first:
        sock.sendall(first)
    return sock


class Trickler(threading.Thread):
    """Sends one more header byte on each socket every ``TRICKLE_EVERY_S``, until stopped or the
    server closes the socket."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.sockets = list(sockets)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(TRICKLE_EVERY_S):
            for sock in list(self.sockets):
                try:
                    sock.send(b"a")
                except OSError:  # closed by the server: what the test expects in the end
                    self.sockets.remove(sock)


def _timed(call: object) -> tuple[float, requests.Response]:
    started = time.monotonic()
    answer = call()  # type: ignore[operator]
    return time.monotonic() - started, answer


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF, maybe after a 408), without blocking."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(4096):
                return True
    except OSError:
        return True
    return False


def test_slow_and_idle_connections_do_not_stop_the_server(
    server: FleetServer, token: tuple[str, str], enough_files: None
) -> None:
    name, password = token
    token_url = f"{server.url}/oauth2/token"
    params = {"service": SERVICE, "scope": f"repository:{REPOSITORY}:pull"}
    limit = scaled(ANSWER_WITHIN_S)

    idle = [_connect(server) for _ in range(PER_KIND)]
    partial = [_connect(server, PARTIAL) for _ in range(PER_KIND)]
    trickling = [_connect(server, PARTIAL) for _ in range(PER_KIND)]
    trickler = Trickler(trickling)
    trickler.start()
    slow = idle + partial + trickling
    try:
        probes = 0
        stop_at = time.monotonic() + PROBE_FOR_S
        while time.monotonic() < stop_at:
            took, health = _timed(lambda: requests.get(f"{server.url}/healthz", timeout=limit))
            assert health.status_code == 200
            assert took < limit, f"/healthz took {took:.2f} s"
            took, token = _timed(
                lambda: requests.get(token_url, params=params, auth=(name, password), timeout=limit)
            )
            assert token.status_code == 200, token.text
            assert token.json()["token"]
            assert took < limit, f"/oauth2/token took {took:.2f} s"
            probes += 1
            time.sleep(PROBE_EVERY_S)
        assert probes >= 5

        # Every slow socket is closed by the server once the header timeout has passed, and the
        # trickled ones too although they never stopped sending.
        open_ones = list(slow)

        def all_closed() -> bool:
            open_ones[:] = [sock for sock in open_ones if not _closed_by_server(sock)]
            return not open_ones

        wait_until(all_closed, "the server closed every slow socket", timeout=HEADER_TIMEOUT_S + 10)
        assert requests.get(f"{server.url}/healthz", timeout=limit).status_code == 200
    finally:
        trickler.stopped.set()
        trickler.join()
        for sock in slow:
            sock.close()


def _read_response(sock: socket.socket) -> bytes:
    """One whole answer with a ``Content-Length`` from ``sock`` (blocking, with its timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, "connection closed in the body"
        body += chunk
    assert len(body) == length, "more than one answer"
    return head


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_bound(
    server: FleetServer,
) -> None:
    sock = _connect(server, b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n\r\n")
    try:
        sock.settimeout(scaled(5.0))
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        # The same connection serves a second request: it was kept alive.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        wait_until(lambda: _closed_by_server(sock), "the idle kept-alive connection closed",
                   timeout=KEEPALIVE_S + 5)  # fmt: skip
        assert time.monotonic() - started >= KEEPALIVE_S - 1
    finally:
        sock.close()


def _form(name: str, password: str) -> bytes:
    return urlencode(
        {
            "grant_type": "password",
            "username": name,
            "password": password,
            "service": SERVICE,
            "scope": f"repository:{REPOSITORY}:pull",
        }
    ).encode()


@pytest.mark.parametrize("framing", ["length", "chunked", "expect-continue"])
def test_a_body_sent_in_pieces_is_answered_whole(
    server: FleetServer, token: tuple[str, str], framing: str
) -> None:
    """The worker waits for the whole body however it is framed, then the app sees all of it."""
    body = _form(*token)
    head = b"POST /oauth2/token HTTP/1.1\r\nHost: fleet\r\n"
    head += b"Content-Type: application/x-www-form-urlencoded\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        half = len(body) // 2
        pieces = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])]
        pieces.append(b"0\r\n\r\n")
    else:
        head += b"Content-Length: %d\r\n" % len(body)
        if framing == "expect-continue":
            head += b"Expect: 100-continue\r\n"
        head += b"\r\n"
        pieces = [body[:10], body[10:]]
    sock = _connect(server, head)
    try:
        sock.settimeout(scaled(5.0))
        if framing == "expect-continue":  # curl waits for this before it sends a body
            assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        for piece in pieces:
            time.sleep(0.2)
            sock.sendall(piece)
        answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        sock.close()


def test_a_stop_is_not_held_up_by_slow_connections(tmp_path: Path) -> None:
    server = FleetServer(tmp_path, env=ENV)
    server.init()
    server.start()
    slow = [_connect(server, PARTIAL) for _ in range(32)] + [_connect(server) for _ in range(32)]
    try:
        process = server._process
        assert process is not None
        started = time.monotonic()
        server.stop()
        assert process.returncode == 0, server.log_tail()
        # gunicorn's graceful_timeout is 10 s; half-read connections are closed at once.
        assert time.monotonic() - started < scaled(10.0), server.log_tail()
    finally:
        for sock in slow:
            sock.close()
        server.stop()
