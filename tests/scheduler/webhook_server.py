"""Real local HTTP endpoints for the warning webhook: one that records, one that never answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ports import LOOPBACK


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Recorder:
    """What the endpoint was sent, and the status it answers with."""

    status: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event_ids(self) -> list[str]:
        with self.lock:
            return [r.headers["X-Fleet-Event-Id"] for r in self.received]


@contextmanager
def recording_endpoint(port: int, recorder: Recorder) -> Iterator[str]:
    """An HTTP server on ``port`` that records every POST; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with recorder.lock:
                recorder.received.append(Received(dict(self.headers.items()), body))
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def hung_endpoint() -> Iterator[str]:
    """A port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}/hook"
