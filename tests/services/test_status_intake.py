"""The status intake takes each device's messages at a bounded rate, per kind, and reports what
it dropped once per device per window (issue 12, defect 7)."""

from __future__ import annotations

import json
import threading

from fleet.config import Settings
from fleet.domain.throttle import TokenBuckets
from fleet.services.status_intake import StatusIntake, message_kind, status_limiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def msg(message_type: str, **fields: object) -> bytes:
    return json.dumps({"type": message_type, **fields}).encode()


class Recorder:
    def __init__(self) -> None:
        self.handled: list[tuple[str, str]] = []
        self.reports: list[dict[str, int]] = []
        self.lock = threading.Lock()

    def handle(self, device_id: str, payload: bytes) -> None:
        with self.lock:
            self.handled.append((device_id, message_kind(payload)))

    def report(self, counts: dict[str, int], _window_s: float) -> None:
        self.reports.append(dict(counts))


def intake(clock: Clock, recorder: Recorder, burst: int = 5) -> StatusIntake:
    return StatusIntake(
        recorder.handle,
        limiter=TokenBuckets(clock, burst=burst, refill_per_s=0.5),
        on_dropped=recorder.report,
        report_every_s=60,
        clock=clock,
    )


def test_a_reject_flood_is_cut_to_the_burst_and_reported_once_per_window() -> None:
    clock, recorder = Clock(), Recorder()
    status = intake(clock, recorder)
    try:
        for version in range(2000):
            status.submit("flood", msg("reject", kind="credentials", version=version))
        status.submit("calm", msg("reject", kind="credentials", version=1))
        status.drain()
        assert recorder.handled.count(("flood", "reject")) == 5
        assert ("calm", "reject") in recorder.handled  # another device is not affected
        assert status.throttled == 1995
        assert recorder.reports == []  # the window has not ended: nothing written yet
        # The same device's hello and ack still get through: buckets are per kind.
        status.submit("flood", msg("hello", versions={"credentials": 1}))
        status.submit("flood", msg("ack", kind="credentials", version=7))
        status.drain()
        assert recorder.handled[-2:] == [("flood", "hello"), ("flood", "ack")]

        clock.t += 60  # the window ends: one report, with the count, on the next message
        status.submit("calm", msg("hello"))
        status.drain()
        assert recorder.reports == [{"flood": 1995}]
        for _ in range(3):  # nothing dropped since: nothing more reported
            clock.t += 60
            status.submit("calm", msg("hello"))
            status.drain()
        assert recorder.reports == [{"flood": 1995}]
        # The flood refilled at 0.5 a second, never beyond the burst.
        before = recorder.handled.count(("flood", "reject"))
        for version in range(100):
            status.submit("flood", msg("reject", kind="credentials", version=version))
        status.drain()
        assert recorder.handled.count(("flood", "reject")) - before == 5
    finally:
        status.stop()
    assert recorder.reports == [{"flood": 1995}, {"flood": 95}]  # stop reports the rest


def test_an_honest_agent_reconnecting_is_never_throttled() -> None:
    """The agent says hello on each connect and acks each delivery: a few reconnects in a row,
    each with a delivery to acknowledge, stay far inside the default rate."""
    recorder = Recorder()
    defaults = Settings()
    status = StatusIntake(
        recorder.handle, limiter=status_limiter(defaults), on_dropped=recorder.report
    )
    try:
        for version in range(1, 11):  # ten reconnects, at once
            status.submit("pi", msg("hello", versions={"credentials": version - 1}))
            status.submit("pi", msg("ack", kind="credentials", version=version))
            status.submit("pi", msg("pull", ok=True, image="edge/app:1"))
        status.drain()
    finally:
        status.stop()
    assert len(recorder.handled) == 30 and status.throttled == 0 and recorder.reports == []


def test_kinds() -> None:
    assert message_kind(msg("hello")) == "hello"
    assert message_kind(msg("reject")) == "reject"
    assert message_kind(msg("nonsense")) == "other"
    assert message_kind(b"not json") == "other"
    assert message_kind(b"[1, 2]") == "other"
    assert message_kind(json.dumps({"type": ["hello"]}).encode()) == "other"
    assert message_kind(msg("hello", pad="x" * 5000)) == "other"  # not parsed when large


def test_messages_already_waiting_reach_the_batch_handler_together_in_order() -> None:
    """While one batch is handled, what arrives waits; the next call gets it all, in the order
    it came, never more than the batch size at once."""
    first_started, release = threading.Event(), threading.Event()
    batches: list[list[tuple[str, bytes]]] = []

    def handle_batch(batch: list[tuple[str, bytes]]) -> None:
        batches.append(batch)
        first_started.set()
        release.wait(5)

    status = StatusIntake(
        lambda *_: None, batch_handler=handle_batch, max_batch=4, report_every_s=60
    )
    try:
        status.submit("d0", msg("hello"))
        assert first_started.wait(5)
        for n in range(1, 10):
            status.submit(f"d{n}", msg("ack", kind="credentials", version=n))
        release.set()
        status.drain()
    finally:
        status.stop()
    assert [len(b) for b in batches] == [1, 4, 4, 1]
    assert [d for b in batches for d, _ in b] == [f"d{n}" for n in range(10)]


def test_a_failing_batch_handler_is_logged_and_the_intake_goes_on() -> None:
    handled: list[int] = []

    def handle_batch(batch: list[tuple[str, bytes]]) -> None:
        handled.append(len(batch))
        if len(handled) == 1:
            raise RuntimeError("the database went away")

    status = StatusIntake(lambda *_: None, batch_handler=handle_batch, report_every_s=60)
    try:
        status.submit("d0", msg("hello"))
        status.drain()
        status.submit("d1", msg("hello"))
        status.drain()
    finally:
        status.stop()
    assert handled == [1, 1]
