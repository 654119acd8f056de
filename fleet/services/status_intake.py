"""Hands device status messages from the MQTT network thread to one worker thread.

The queue is bounded: when it is full a message is dropped with a warning. Nothing is lost for
good by that: a device repeats its hello on every reconnect, and unacknowledged deliveries are
published again until acknowledged.

Each device's messages are also taken at a bounded rate, per kind of message (a bucket each for
hellos, acks, rejects, pull results and anything else), before they reach the queue: a device
flooding its status topic cannot fill the queue shared by every device, and a flood of rejects
does not starve that device's own acks and hellos. What is dropped is counted, and reported at
most once per device per report window (one audit event saying how many, never one per message).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from device_agent.protocol.messages import MAX_STATUS_BYTES, TYPES
from fleet.config import Settings
from fleet.domain.throttle import TokenBuckets

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
MAX_REPORTED_DEVICES = 10_000  # per window; beyond that only the total is counted
DEFAULT_REPORT_EVERY_S = 60.0
MAX_BUCKETS = 500_000  # devices x kinds; the least recently heard are forgotten first
# Messages already waiting are handed over together, up to this many: one transaction for
# them all instead of one each (what bounds acknowledgements per second with many devices).
MAX_BATCH = 200

Handler = Callable[[str, bytes], None]
BatchHandler = Callable[[list[tuple[str, bytes]]], None]
DropReporter = Callable[[dict[str, int], float], None]


def status_limiter(settings: Settings) -> TokenBuckets:
    return TokenBuckets(
        time.monotonic,
        burst=settings.status_burst,
        refill_per_s=settings.status_per_minute / 60,
        max_keys=MAX_BUCKETS,
    )


def message_kind(payload: bytes) -> str:
    """The ``type`` of a status message when it is a known one, else ``"other"``."""
    if len(payload) > MAX_STATUS_BYTES:  # not read here: the handler drops it
        return "other"
    try:
        message = json.loads(payload)
    except ValueError:
        return "other"
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) and kind in TYPES else "other"


class StatusIntake:
    def __init__(
        self,
        handler: Handler,
        max_queued: int = MAX_QUEUED,
        *,
        limiter: TokenBuckets | None = None,
        on_dropped: DropReporter | None = None,
        report_every_s: float = DEFAULT_REPORT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        batch_handler: BatchHandler | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """``batch_handler``, when given, gets the messages already waiting (at most
        ``max_batch``, in the order they came) in one call; else ``handler`` gets each."""
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max(1, max_batch)
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._limiter = limiter
        self._on_dropped = on_dropped
        self._report_every_s = report_every_s
        self._clock = clock
        # Messages dropped over a device's rate since the window began, per device.
        self._throttled: dict[str, int] = {}
        self._window_started: float | None = None
        self.dropped = 0  # queue full
        self.throttled = 0  # over a device's rate (all time)
        self.unreported = 0  # throttled beyond MAX_REPORTED_DEVICES in a window

    def submit(self, device_id: str, payload: bytes) -> None:
        """Called on the network thread: never blocks."""
        self._ensure_started()
        if self._limiter is not None and not self._limiter.take(
            f"{device_id}\n{message_kind(payload)}"
        ):
            self._count_throttled(device_id)
            return
        try:
            self._queue.put_nowait((device_id, payload))
        except queue.Full:
            self.dropped += 1
            log.warning("status queue full: dropped a message from %s", device_id)

    def _count_throttled(self, device_id: str) -> None:
        with self._lock:
            self.throttled += 1
            if self._window_started is None:
                self._window_started = self._clock()
            if device_id in self._throttled:
                self._throttled[device_id] += 1
            elif len(self._throttled) < MAX_REPORTED_DEVICES:
                self._throttled[device_id] = 1
                log.warning("status messages of %s over its rate: dropping them", device_id)
            else:
                self.unreported += 1

    def report_throttled(self, *, force: bool = False) -> dict[str, int]:
        """Hand what was dropped in the window that ended (every window, with ``force``) to
        the reporter; returns it. Called on the worker thread (and at stop)."""
        with self._lock:
            started = self._window_started
            if started is None:
                return {}
            if not force and self._clock() - started < self._report_every_s:
                return {}
            counts, self._throttled, self._window_started = self._throttled, {}, None
        window = max(self._report_every_s, self._clock() - started)
        if self._on_dropped is not None and counts:
            try:
                self._on_dropped(counts, window)
            except Exception:
                log.exception("recording %d throttled devices failed", len(counts))
        return counts

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fleet-status", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._report_every_s)
            except queue.Empty:
                self.report_throttled()
                continue
            batch, stopping = self._take_waiting(item)
            try:
                self._handle(batch)
            finally:
                for _ in range(len(batch) + stopping):
                    self._queue.task_done()
            if stopping:
                return
            self.report_throttled()

    def _take_waiting(
        self, first: tuple[str, bytes] | None
    ) -> tuple[list[tuple[str, bytes]], bool]:
        """``first`` and what already waits behind it (up to the batch size, only with a batch
        handler); True when the stop marker was among them (it ends the batch)."""
        if first is None:
            return [], True
        batch = [first]
        while self._batch_handler is not None and len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _handle(self, batch: list[tuple[str, bytes]]) -> None:
        if not batch:
            return
        try:
            if self._batch_handler is not None:
                self._batch_handler(batch)
            else:
                self._handler(*batch[0])
        except Exception:
            log.exception("handling %d status message(s) from %s failed", len(batch), batch[0][0])

    def drain(self) -> None:
        """Wait until every submitted message has been handled (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(5)
            with self._lock:
                self._thread = None
        self.report_throttled(force=True)
