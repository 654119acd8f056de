"""A TCP proxy on loopback that slows a link down: each connection's bytes are paced to a rate.

End-to-end tests put it between a client (skopeo, the agent's puller) and the real registry to
make a pull last as long as the test needs, with real sockets end to end::

    with SlowProxy(registry.host_port, Link(down_bytes_per_s=32_000)) as proxy:
        skopeo.copy_from_registry(proxy.host_port, "samples/big", "v1", target, creds)
        proxy.connections()       # what each connection carried, and when

The rate holds per connection and per direction (``down`` is upstream to client, ``up`` the
other way; ``None`` is unpaced), as a slow radio link does to each TCP stream: a direction sends
a chunk of about a twentieth of a second's bytes, then waits until the rate allows the next.
``Link.cut_after_down_bytes`` closes a connection once that many bytes went down: a link that
drops in the middle of a download.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from tests.support.ports import LOOPBACK

MAX_CHUNK_BYTES = 16 * 1024
CHUNKS_PER_S = 20  # a paced direction sends about this many chunks a second
ACCEPT_POLL_S = 0.1  # how soon stop() is noticed by the accept loop
CONNECT_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 5.0
BACKLOG = 64

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class Link:
    """How the proxy treats every connection: rates in bytes per second, or None for unpaced."""

    down_bytes_per_s: int | None = None
    up_bytes_per_s: int | None = None
    cut_after_down_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("down_bytes_per_s", "up_bytes_per_s", "cut_after_down_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"Link.{name} must be a positive int or None, got {value!r}")


@dataclass
class Connection:
    """One client connection as the proxy saw it (times from ``time.monotonic()``)."""

    opened_at: float
    up_bytes: int = 0
    down_bytes: int = 0
    closed_at: float | None = None
    cut: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, direction: Direction, n: int) -> int:
        """Count ``n`` more bytes carried in ``direction``; that direction's new total."""
        with self._lock:
            if direction == "up":
                self.up_bytes += n
                return self.up_bytes
            self.down_bytes += n
            return self.down_bytes


class _Pacer:
    """Spaces sends so that one direction carries at most ``rate`` bytes a second: after ``n``
    bytes the next send waits ``n / rate`` s. An idle link earns no credit for a later burst."""

    def __init__(self, rate: int | None, stop: threading.Event) -> None:
        self.rate = rate
        self._stop = stop
        self._next = time.monotonic()

    @property
    def chunk(self) -> int:
        if self.rate is None:
            return MAX_CHUNK_BYTES
        return max(1, min(MAX_CHUNK_BYTES, self.rate // CHUNKS_PER_S))

    def wait_for(self, n: int) -> None:
        """Before sending ``n`` bytes: wait for the previous send's time to pass."""
        if self.rate is None:
            return
        now = time.monotonic()
        if self._next > now:
            self._stop.wait(self._next - now)
            now = time.monotonic()
        self._next = max(self._next, now) + n / self.rate


class _Pair:
    """The two sockets of one proxied connection; the second direction to end closes both."""

    def __init__(self, client: socket.socket, server: socket.socket, connection: Connection):
        self.client = client
        self.server = server
        self.connection = connection
        self._ended = 0
        self._lock = threading.Lock()

    def one_direction_done(self) -> bool:
        """Record that a direction ended cleanly; True while the other one still runs."""
        with self._lock:
            self._ended += 1
            return self._ended == 1


class SlowProxy:
    """Listens on a free loopback port and forwards every connection to ``upstream``
    (``"host:port"``), paced by ``link``. A context manager; ``stop()`` closes everything."""

    def __init__(self, upstream: str, link: Link, *, host: str = LOOPBACK) -> None:
        upstream_host, _, port = upstream.rpartition(":")
        if not upstream_host or not port.isdigit():
            raise ValueError(f"upstream must be 'host:port', got {upstream!r}")
        self.upstream = (upstream_host, int(port))
        self.link = link
        self._listener = socket.create_server((host, 0), backlog=BACKLOG)
        self._listener.settimeout(ACCEPT_POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="slow-proxy", daemon=True)

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def connections(self) -> list[Connection]:
        """Every connection accepted so far, oldest first."""
        with self._lock:
            return list(self._connections)

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(JOIN_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _close(sock)
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            _close(client)
            return
        for sock in (client, server):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server, Connection(opened_at=time.monotonic()))
        pumps = [
            threading.Thread(target=self._pump, args=(pair, "up"), daemon=True),
            threading.Thread(target=self._pump, args=(pair, "down"), daemon=True),
        ]
        with self._lock:
            self._connections.append(pair.connection)
            self._sockets |= {client, server}
            self._threads = [t for t in self._threads if t.is_alive()] + pumps
        for pump in pumps:
            pump.start()

    def _pump(self, pair: _Pair, direction: Direction) -> None:
        """Copy one direction at its rate; on EOF pass the half-close on; on a cut or an error
        close both sockets (the other direction then ends too)."""
        up = direction == "up"
        source, sink = (pair.client, pair.server) if up else (pair.server, pair.client)
        pacer = _Pacer(self.link.up_bytes_per_s if up else self.link.down_bytes_per_s, self._stop)
        cut_after = None if up else self.link.cut_after_down_bytes
        connection = pair.connection
        clean = False
        try:
            while not self._stop.is_set():
                data = source.recv(pacer.chunk)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    clean = True
                    break
                if cut_after is not None:
                    data = data[: cut_after - connection.down_bytes]
                pacer.wait_for(len(data))
                if self._stop.is_set():
                    break
                sink.sendall(data)
                total = connection.add(direction, len(data))
                if cut_after is not None and total >= cut_after:
                    connection.cut = True
                    break
        except OSError:
            pass
        if clean and not self._stop.is_set() and pair.one_direction_done():
            return  # the other direction still runs; it closes both when it ends
        self._close_pair(pair)

    def _close_pair(self, pair: _Pair) -> None:
        _close(pair.client)
        _close(pair.server)
        with self._lock:
            self._sockets -= {pair.client, pair.server}
            if pair.connection.closed_at is None:
                pair.connection.closed_at = time.monotonic()

    def __enter__(self) -> SlowProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
