"""The slowed link the long-pull tests use: bytes arrive intact, no faster than the rate on each
connection (two connections do not share one rate), a cut link closes after exactly N bytes, and
stopping the proxy closes what it carries."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.ports import LOOPBACK
from tests.support.slow_proxy import Link, SlowProxy
from tests.support.timing import scaled, wait_until

RATE = 20_000
PAYLOAD = os.urandom(2 * RATE)  # two seconds' worth at RATE
IO_TIMEOUT_S = 10.0


class Upstream:
    """A loopback server: each connection reads one line, then gets PAYLOAD (``b"send"``) or its
    line echoed (anything else), then EOF."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.host_port = f"{LOOPBACK}:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            line = reader.readline()
            with contextlib.suppress(OSError):
                conn.sendall(PAYLOAD if line == b"send\n" else line)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.listener.close()


def ask(proxy: SlowProxy, line: bytes) -> bytes:
    """Send ``line``, read to EOF."""
    with socket.create_connection((proxy.host, proxy.port), timeout=scaled(IO_TIMEOUT_S)) as sock:
        sock.sendall(line)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
        return bytes(received)


def test_an_unpaced_link_carries_both_directions_intact(upstream: Upstream) -> None:
    with SlowProxy(upstream.host_port, Link()) as proxy:
        assert ask(proxy, b"hello there\n") == b"hello there\n"
        assert ask(proxy, b"send\n") == PAYLOAD
        wait_until(lambda: all(c.closed_at for c in proxy.connections()), "both closed", 5)
        first, second = proxy.connections()
    assert (first.up_bytes, first.down_bytes) == (12, 12)
    assert (second.up_bytes, second.down_bytes) == (5, len(PAYLOAD))


def test_each_connection_gets_the_rate_and_no_more(upstream: Upstream) -> None:
    results: list[tuple[bytes, float]] = []

    def timed() -> None:
        started = time.monotonic()
        data = ask(proxy, b"send\n")
        results.append((data, time.monotonic() - started))

    with SlowProxy(upstream.host_port, Link(down_bytes_per_s=RATE)) as proxy:
        clients = [threading.Thread(target=timed) for _ in range(2)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(scaled(IO_TIMEOUT_S))
    assert [data for data, _ in results] == [PAYLOAD, PAYLOAD]
    expected = len(PAYLOAD) / RATE  # 2 s each, together: the rate is per connection
    for _, took in results:
        assert expected - 0.1 <= took <= expected + scaled(1.5), took


def test_an_idle_connection_earns_no_burst(upstream: Upstream) -> None:
    with SlowProxy(upstream.host_port, Link(down_bytes_per_s=RATE)) as proxy:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=scaled(IO_TIMEOUT_S))
        with sock:
            time.sleep(1.0)  # idle: must not be spent later as a one-second burst
            started = time.monotonic()
            sock.sendall(b"send\n")
            received = 0
            while chunk := sock.recv(65536):
                received += len(chunk)
            took = time.monotonic() - started
    assert received == len(PAYLOAD)
    assert took >= len(PAYLOAD) / RATE - 0.1, took


def test_a_cut_link_closes_after_exactly_n_bytes(upstream: Upstream) -> None:
    with SlowProxy(upstream.host_port, Link(cut_after_down_bytes=1000)) as proxy:
        assert ask(proxy, b"send\n") == PAYLOAD[:1000]
        (connection,) = proxy.connections()
    assert connection.cut and connection.down_bytes == 1000


def test_stop_closes_the_connections_it_carries(upstream: Upstream) -> None:
    proxy = SlowProxy(upstream.host_port, Link(down_bytes_per_s=100))
    proxy.start()
    sock = socket.create_connection((proxy.host, proxy.port), timeout=scaled(IO_TIMEOUT_S))
    with sock:
        sock.sendall(b"send\n")
        wait_until(lambda: proxy.connections(), "the proxy accepted the connection", 5)
        started = time.monotonic()
        proxy.stop()
        while sock.recv(65536):
            pass  # EOF (or a reset) soon, not after len(PAYLOAD) / 100 s
    assert time.monotonic() - started < scaled(5.0)
    assert proxy.connections()[0].closed_at is not None


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ({"down_bytes_per_s": 0}, "down_bytes_per_s must be a positive int"),
        ({"up_bytes_per_s": -5}, "up_bytes_per_s must be a positive int"),
        ({"cut_after_down_bytes": 0}, "cut_after_down_bytes must be a positive int"),
    ],
)
def test_a_link_refuses_rates_that_are_not_positive(link: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Link(**link)


@pytest.mark.parametrize("upstream_address", ["no-port", "host:", ":80", "host:http"])
def test_a_bad_upstream_is_refused(upstream_address: str) -> None:
    with pytest.raises(ValueError, match="upstream must be 'host:port'"):
        SlowProxy(upstream_address, Link())
