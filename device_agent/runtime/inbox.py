"""The agent's main-thread inbox: other threads (MQTT, pulls) and signal handlers drop events
into it; the main thread sleeps in ``select`` until an event or its next deadline, so an idle
agent wakes only when something happens.

A self-pipe makes it safe to wake from a signal handler (``wake()`` is a bare ``os.write``,
taking no lock that the interrupted code might hold).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
DRAIN_BYTES = 4096


class Inbox(Generic[T]):
    def __init__(self, max_items: int) -> None:
        self._items: deque[T] = deque()
        self._max_items = max_items
        self._lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Queue ``item``; False (and counted) when the inbox is full."""
        with self._lock:
            if len(self._items) >= self._max_items:
                self.dropped += 1
                return False
            self._items.append(item)
        self.wake()
        return True

    def wake(self) -> None:
        """Interrupt ``wait``; safe in a signal handler."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def wait(self, timeout_s: float | None) -> list[T]:
        """Everything queued, waiting up to ``timeout_s`` (None: forever) for something to
        arrive or for ``wake()``; may return an empty list."""
        with self._lock:
            if self._items:
                return self._take()
        with contextlib.suppress(InterruptedError):
            select.select([self._read_fd], [], [], timeout_s)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, DRAIN_BYTES):
                pass
        with self._lock:
            return self._take()

    def _take(self) -> list[T]:
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)
