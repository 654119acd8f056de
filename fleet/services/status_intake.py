"""Hands device status messages from the MQTT network thread to one worker thread.

The queue is bounded: when it is full a message is dropped with a warning. Nothing is lost for
good by that: a device repeats its hello on every reconnect, and unacknowledged deliveries are
published again until acknowledged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000

Handler = Callable[[str, bytes], None]


class StatusIntake:
    def __init__(self, handler: Handler, max_queued: int = MAX_QUEUED) -> None:
        self._handler = handler
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def submit(self, device_id: str, payload: bytes) -> None:
        """Called on the network thread: never blocks."""
        self._ensure_started()
        try:
            self._queue.put_nowait((device_id, payload))
        except queue.Full:
            self.dropped += 1
            log.warning("status queue full: dropped a message from %s", device_id)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleet-status", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._handler(*item)
            except Exception:
                log.exception("handling a status message from %s failed", item and item[0])
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every submitted message has been handled (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(5)
                self._thread = None
