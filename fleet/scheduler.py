"""APScheduler drives the reconciler (an interval job, run at start to catch up) and the
pruning of old rows (another interval job, less often).

Every server may start a scheduler; the leadership lock lets one of them act per pass. The job
is never a one-shot: work is found from the database on each pass, so nothing is lost while
no scheduler runs and nothing is done twice when two try.

A pass and the release of the lock never interleave: ``stop()`` waits for the pass under way
to end before it lets the lock go, or another server could start a pass beside it.

The warning webhook is sent by a second job of its own (``send_outbox``), also on the leader
only, so a slow or dead endpoint never holds up a pass; its claims keep two senders apart even
while leadership changes hands.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from fleet.metrics import metrics
from fleet.services import Services
from fleet.services.leadership import Leadership, leadership_for
from fleet.services.outbox import WebhookSender
from fleet.services.reconciler import PassSummary
from fleet.services.retention import PruneSummary
from fleet.services.scheduler_runs import RECENT_RUNS, RunRecord

log = logging.getLogger(__name__)
JOB_ID = "fleet-reconciler"
RETENTION_JOB_ID = "fleet-retention"
OUTBOX_JOB_ID = "fleet-webhook-outbox"


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class FleetScheduler:
    def __init__(
        self,
        services: Services,
        leadership: Leadership | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        self.services = services
        ctx = services.ctx
        self.leadership = leadership or leadership_for(ctx.db.engine, ctx.settings.data_dir)
        self.reconciler = services.reconciler
        self.retention = services.retention
        self.sender = sender or services.webhook
        self._scheduler: BackgroundScheduler | None = None
        # Held for a whole pass (and a whole send), and by stop() while it releases the lock.
        self._pass_lock = threading.Lock()
        self._send_lock = threading.Lock()
        # The two jobs share the leadership's connection: one call at a time.
        self._leader_lock = threading.Lock()
        self._stopping = threading.Event()

    def _leads(self) -> bool:
        with self._leader_lock:
            return self.leadership.acquire()

    def tick(self) -> PassSummary | None:
        """One pass if this process leads; ``None`` when another one does."""
        with self._pass_lock:
            return self._tick()

    def send_outbox(self) -> int | None:
        """Send the warning webhook's due events if this process leads; ``None`` otherwise."""
        with self._send_lock:
            if self._stopping.is_set() or not self._leads():
                return None
            return self.sender.run(self._stopping)

    def _tick(self) -> PassSummary | None:
        if not self._leads():
            return None
        runs = self.services.scheduler_runs
        run_id = runs.start(node_name())
        started = time.perf_counter()
        try:
            summary = self.reconciler.run_pass()
        except Exception as exc:
            metrics().scheduler_pass_errors.inc()
            log.exception("reconciler pass failed")
            runs.finish(run_id, None, f"{exc.__class__.__name__}: {exc}")
            raise
        metrics().scheduler_pass_seconds.observe(time.perf_counter() - started)
        runs.finish(run_id, summary, None)
        return summary

    def prune(self) -> PruneSummary | None:
        """One retention pass if this process leads; ``None`` when another one does."""
        with self._pass_lock:
            if self._stopping.is_set() or not self._leads():
                return None
            return self.retention.prune()

    def start(self) -> None:
        interval = self.services.ctx.settings.scheduler_interval_seconds
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self._safe_tick,
            "interval",
            seconds=interval,
            id=JOB_ID,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        settings = self.services.ctx.settings
        for job, seconds, job_id in (
            (self._safe_prune, settings.retention_interval_seconds, RETENTION_JOB_ID),
            (self._safe_send, settings.webhook_interval_seconds, OUTBOX_JOB_ID),
        ):
            scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=job_id,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler

    def _safe_tick(self) -> None:
        try:
            led = self.tick()
        except Exception:  # logged in tick; the next interval tries again
            return
        if led is not None:  # the leader takes up the bulk jobs of servers that died
            try:
                self.services.jobs.resume_abandoned()
            except Exception:
                log.exception("resuming abandoned bulk jobs failed")

    def _safe_prune(self) -> None:
        try:
            self.prune()
        except Exception:  # the next interval tries again
            log.exception("retention pass failed")

    def _safe_send(self) -> None:
        try:
            self.send_outbox()
        except Exception:  # a database error: the next interval tries again
            log.exception("sending the warning webhook's outbox failed")

    def stop(self) -> None:
        """No more passes or sends; the lock is released once the pass under way (if any) has
        ended and the send under way has finished the event it was posting."""
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        with self._pass_lock, self._send_lock, self._leader_lock:
            self.leadership.release()


def recent_runs(services: Services, limit: int = RECENT_RUNS) -> list[RunRecord]:
    """The last ``limit`` passes, newest first (see :class:`SchedulerRunService`)."""
    return services.scheduler_runs.recent(limit)
