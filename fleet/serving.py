"""A gunicorn worker that reads whole requests in a selector loop before any thread sees them.

Gunicorn's sync worker gives a connection the worker's only thread from ``accept`` on, and its
gthread worker gives it a pool thread that waits up to 5 s for a first byte and then reads the
request blocking, with no time limit: a few clients that connect and send nothing, half a
request, or a byte a second hold every thread, and ``/healthz`` stops answering (issue 12,
defect 5). This worker does what a buffering proxy in front would do:

- one thread per worker runs a selector loop that accepts connections and reads them without
  blocking into a buffer, until the request's headers (at most ``MAX_HEADER_BYTES``) and body
  (``Content-Length`` or chunked, at most the app's ``FLEET_MAX_REQUEST_BYTES`` plus chunk
  framing) are all there;
- the headers must arrive within ``header_timeout`` of the first byte (or of ``accept``), the
  body within ``body_timeout`` after them; a connection that misses either is closed (408 when
  it had sent something), as is a kept-alive connection idle for ``keepalive`` seconds;
- only then is the request handed, with its bytes, to a pool of ``threads`` threads that run
  gunicorn's own parser and the WSGI app on it; writing the answer is bounded by
  ``send_timeout``;
- at most ``max_connections`` connections per worker (accepting pauses beyond), and at most
  ``MAX_BUFFERED_BYTES`` buffered per worker (a connection that would exceed it gets a 503).

A body larger than the app's limit is not buffered: the request goes to the app at once, which
answers 413 without reading it, and the connection is closed after the answer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import selectors
import socket
import sys
import time
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.workers import base

MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERED_BYTES = 256 * 1024 * 1024
RECV_BYTES = 64 * 1024
TICK_S = 0.25
# Chunk framing a body may add to its payload: a size line and CRLF per chunk, trailers.
CHUNK_OVERHEAD_BYTES = 64 * 1024

_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,19})[ \t]*$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue[ \t]*$", re.I | re.M)
_HTTP11 = re.compile(rb"^[^\r\n]* HTTP/1\.1\r?$", re.M)

_STATUS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\n",
}


def _refusal(status: int) -> bytes:
    return _STATUS[status] + b"Connection: close\r\nContent-Length: 0\r\n\r\n"


def chunked_end(data: bytes, start: int) -> int | None:
    """Where a chunked body starting at ``start`` ends in ``data`` (None: not all there yet).
    Malformed framing counts as complete: gunicorn's parser will then answer 400."""
    position = start
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = data[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return len(data)
        if size < 0:
            return len(data)
        if size == 0:
            trailers_end = data.find(b"\r\n", line_end + 2)
            while trailers_end >= 0 and trailers_end != line_end + 2:
                # a trailer line: look for the empty line that ends them
                line_end = trailers_end
                trailers_end = data.find(b"\r\n", line_end + 2)
            return None if trailers_end < 0 else trailers_end + 2
        position = line_end + 2 + size + 2
        if position > len(data):
            return None


@dataclass
class Conn:
    sock: socket.socket
    client: Any
    server: Any
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    headers_end: int | None = None  # index just past the blank line
    body_end: int | None = None  # known once the body's extent is
    chunked: bool = False
    oversized: bool = False
    continued: bool = False
    requests: int = 0


class BufferingWorker(base.Worker):  # type: ignore[misc]
    """See the module's docstring. Settings come from ``fleet serve`` through gunicorn's config:
    ``threads``, ``worker_connections`` (max connections), ``keepalive``, and the environment
    ``FLEET_SERVE_*`` values copied into the class attributes below before the fork."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    max_body_bytes: int = 1024 * 1024

    def init_process(self) -> None:
        self.tpool = futures.ThreadPoolExecutor(max_workers=self.cfg.threads)
        self.selector = selectors.DefaultSelector()
        self.done: queue.SimpleQueue[tuple[Conn, bool, bytes]] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.reading: dict[int, Conn] = {}  # fd -> connection being read or kept alive
        self.in_flight = 0
        self.buffered = 0
        self.accepting = False
        super().init_process()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
        self._set_accepting(True)
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            self._set_accepting(self._connections() < self.cfg.worker_connections)
            self._poll()
            self._expire(time.monotonic())
        # Graceful stop: no new connections; idle and half-read ones are closed; requests
        # being handled may finish within graceful_timeout.
        self._set_accepting(False)
        for conn in list(self.reading.values()):
            self._close(conn)
        stop_by = time.monotonic() + self.cfg.graceful_timeout
        while self.in_flight and time.monotonic() < stop_by:
            self.notify()
            self._poll()
            for conn in list(self.reading.values()):
                self._close(conn)
        self.tpool.shutdown(wait=False)
        for listener in self.sockets:
            listener.close()

    def _connections(self) -> int:
        return len(self.reading) + self.in_flight

    def _set_accepting(self, enabled: bool) -> None:
        if enabled == self.accepting:
            return
        for listener in self.sockets:
            if enabled:
                self.selector.register(listener, selectors.EVENT_READ, listener)
            else:
                self.selector.unregister(listener)
        self.accepting = enabled

    def _poll(self) -> None:
        try:
            events = self.selector.select(TICK_S)
        except OSError as error:
            if error.errno != errno.EINTR:
                raise
            return
        for key, _ in events:
            if key.data is None:
                self._drain_done()
            elif isinstance(key.data, Conn):
                self._readable(key.data)
            else:
                self._accept(key.data)
        self._drain_done()

    def _accept(self, listener: socket.socket) -> None:
        while self._connections() < self.cfg.worker_connections:
            try:
                sock, client = listener.accept()
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                raise
            sock.setblocking(False)
            conn = Conn(sock, client, listener.getsockname(), self._header_deadline())
            self._watch(conn)

    def _header_deadline(self) -> float:
        return time.monotonic() + self.header_timeout

    def _watch(self, conn: Conn) -> None:
        self.reading[conn.sock.fileno()] = conn
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _unwatch(self, conn: Conn) -> None:
        self.reading.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(conn.sock)

    def _close(self, conn: Conn, answer: bytes = b"") -> None:
        self._unwatch(conn)
        self.buffered -= len(conn.buf)
        conn.buf = bytearray()
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)
        util.close(conn.sock)

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if not conn.buf and conn.requests:  # a kept-alive connection starts its next request
            conn.deadline = self._header_deadline()
        if self.buffered + len(data) > MAX_BUFFERED_BYTES:
            self.log.warning("buffered request bytes at their bound; refusing a connection")
            self._close(conn, _refusal(503))
            return
        conn.buf += data
        self.buffered += len(data)
        self._progress(conn)

    def _progress(self, conn: Conn) -> None:
        """Look at what ``conn`` has sent; hand the request on once all of it is there."""
        buf = conn.buf
        if conn.headers_end is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._close(conn, _refusal(431))
                return
            if end + 4 > MAX_HEADER_BYTES:
                self._close(conn, _refusal(431))
                return
            conn.headers_end = end + 4
            head = bytes(buf[: conn.headers_end])
            conn.deadline = time.monotonic() + self.body_timeout
            if _CHUNKED.search(head):
                conn.chunked = True
            else:
                length = _CONTENT_LENGTH.search(head)
                size = int(length.group(1)) if length else 0
                if size > self.max_body_bytes:
                    conn.oversized = True
                conn.body_end = conn.headers_end + size
            if (
                not conn.oversized
                and _EXPECT_CONTINUE.search(head)
                and _HTTP11.match(head)
                and len(buf) == conn.headers_end
                and conn.body_end != conn.headers_end
            ):
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    conn.continued = True
                except OSError:
                    pass
        if conn.chunked and conn.body_end is None:
            conn.body_end = chunked_end(bytes(buf), conn.headers_end)
            if conn.body_end is None:
                if len(buf) - conn.headers_end > self.max_body_bytes + CHUNK_OVERHEAD_BYTES:
                    conn.oversized = True
                else:
                    return
        if not conn.oversized and (conn.body_end is None or len(buf) < conn.body_end):
            return
        self._dispatch(conn)

    def _dispatch(self, conn: Conn) -> None:
        self._unwatch(conn)
        self.buffered -= len(conn.buf)
        data = bytes(conn.buf)
        conn.buf = bytearray()
        self.in_flight += 1
        conn.requests += 1
        future = self.tpool.submit(self._serve, conn, data)
        future.add_done_callback(lambda f: self._finished(conn, f))

    def _finished(self, conn: Conn, future: futures.Future[tuple[bool, bytes]]) -> None:
        try:
            keepalive, rest = future.result()
        except BaseException:  # whatever happened, the connection closes
            keepalive, rest = False, b""
        self.done.put((conn, keepalive, rest))
        with contextlib.suppress(OSError):  # a full pipe: the loop wakes within TICK_S anyway
            os.write(self.wake_w, b".")

    def _drain_done(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except OSError:
            pass
        while True:
            try:
                conn, keepalive, rest = self.done.get_nowait()
            except queue.Empty:
                return
            self.in_flight -= 1
            if not keepalive or not self.alive:
                util.close(conn.sock)
                continue
            conn.sock.setblocking(False)
            conn.headers_end = conn.body_end = None
            conn.chunked = conn.oversized = conn.continued = False
            conn.buf = bytearray(rest)
            self.buffered += len(rest)
            conn.deadline = (
                self._header_deadline() if rest else time.monotonic() + self.cfg.keepalive
            )
            self._watch(conn)
            if rest:
                self._progress(conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.reading.values() if c.deadline <= now]:
            self._close(conn, _refusal(408) if conn.buf else b"")

    # -- in a pool thread -----------------------------------------------------------------

    def _serve(self, conn: Conn, data: bytes) -> tuple[bool, bytes]:
        """Parse and answer one buffered request; (keep the connection?, bytes read past it)."""
        sock = conn.sock
        req = None
        try:
            sock.setblocking(True)
            # Reads only reach the socket for an oversized body the app does not want anyway.
            sock.settimeout(self.send_timeout)
            parser = http.get_parser(self.cfg, sock, conn.client)
            parser.unreader.unread(data)
            req = next(parser)
            if conn.continued:
                req._expected_100_continue = False  # sent already, by the loop
            keepalive = self._handle(req, conn)
            if not keepalive or conn.oversized:
                return False, b""
            if not parser.finish_body(deadline=time.monotonic() + 1.0):
                return False, b""
            return True, parser.unreader.take_buffered()
        except (StopIteration, http.errors.NoMoreData):
            return False, b""
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
            return False, b""
        except Exception as error:  # gunicorn answers 400 or 500 for it
            try:
                self.handle_error(req, sock, conn.client, error)
            except Exception:
                self.log.debug("could not send the error answer", exc_info=True)
            return False, b""

    def _handle(self, req: Any, conn: Conn) -> bool:
        """gunicorn's gthread ``handle_request``, on a connection this worker read."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive or conn.oversized:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            util.reraise(*sys.exc_info())
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return False
