"""Bulk jobs: rotate or disable every device of a group, in the background, followed by id.

One request makes a :class:`~fleet.db.jobs.BulkJob` row and returns; a thread of the server
that took it (or, should that server die, of whichever server's scheduler finds it abandoned)
works through the group's devices by primary key, ``batch_size`` at a time:

1. one transaction per batch: the job's row is checked to be still this runner's (its claim
   token) and its heartbeat moved; the batch's devices are locked (as any rotation or disable
   locks them), their rows written, and the job's cursor and counts advanced, all together;
2. after it commits: the batch's envelopes are published (and, to disable, the broker logins
   cut), then ``settled_pk`` is advanced.

So a job taken over resumes at its cursor, and no device is rotated twice by one job: a batch
either committed with its cursor or not at all. What a dead server left unsettled (published
nothing, cut no login) is done again for that range, which is idempotent. A device failing is
counted and listed (a bounded list), never stops the job. Memory is one batch, whatever the
group's size: the pages are read by key, never the whole group.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from fleet.db.devices import ACTIVE, DISABLED, Device, DeviceGroup
from fleet.db.jobs import JOB_DONE, JOB_FAILED, JOB_QUEUED, JOB_RUNNING, BulkJob
from fleet.domain.errors import ConflictError, NotFoundError, ValidationError
from fleet.services.context import ServiceContext, audit
from fleet.services.delivery import DeliveryService
from fleet.services.devices import DeviceService
from fleet.services.devices.lifecycle import Cut
from fleet.services.paging import DEFAULT_LIMIT, Cursors, Page, check_limit

log = logging.getLogger(__name__)

ROTATE, DISABLE = "rotate", "disable"
KINDS = (ROTATE, DISABLE)
BATCH_SIZE = 200  # devices per transaction
MAX_BATCH_SIZE = 1_000
MAX_ERRORS = 20  # devices listed with their error; the rest are only counted
MAX_ERROR_CHARS = 200
MAX_ERRORS_JSON = 4_000  # under the column's 4,096
MAX_REASON_CHARS = 256
# A running job whose heartbeat (moved by every batch and every HEARTBEAT_S) is older than
# this is taken over.
STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_S = 15.0  # a running job's heartbeat, besides the one every batch moves
RESUME_AT_ONCE = 10
JOBS_LIST = "jobs"


@dataclass(frozen=True, slots=True)
class JobError:
    device_id: str
    message: str


@dataclass(frozen=True, slots=True)
class JobView:
    id: int
    kind: str
    group: str
    state: str
    total: int
    done: int
    skipped: int
    failed: int
    errors: tuple[JobError, ...]
    actor: str
    reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None

    @property
    def finished(self) -> bool:
        return self.state in (JOB_DONE, JOB_FAILED)


def _view(job: BulkJob) -> JobView:
    errors = tuple(JobError(e["deviceId"], e["message"]) for e in json.loads(job.errors))
    assert job.id is not None
    return JobView(
        id=job.id,
        kind=job.kind,
        group=job.group_name,
        state=job.state,
        total=job.total,
        done=job.done,
        skipped=job.skipped,
        failed=job.failed,
        errors=errors,
        actor=job.actor,
        reason=job.reason,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        message=job.message,
    )


def _record_failures(job: BulkJob, failures: Sequence[tuple[str, str]]) -> None:
    """Count ``failures`` on the job and list the first ones, within the column's bound."""
    if not failures:
        return
    job.failed += len(failures)
    listed = json.loads(job.errors)
    for device_id, message in failures:
        if len(listed) >= MAX_ERRORS:
            break
        entry = {"deviceId": device_id, "message": message[:MAX_ERROR_CHARS]}
        if len(json.dumps([*listed, entry])) > MAX_ERRORS_JSON:
            break
        listed.append(entry)
    job.errors = json.dumps(listed)


def _eligible(kind: str) -> object:
    """The devices a job of ``kind`` acts on (as read when paging; locked rows decide)."""
    return col(Device.status) == ACTIVE if kind == ROTATE else col(Device.status) != DISABLED


class LostClaim(Exception):
    """Another runner took the job over (this one was thought dead): stop at once."""


@dataclass(frozen=True, slots=True)
class _Batch:
    low: int  # the cursor before it (exclusive)
    high: int  # the cursor after it (inclusive)
    rotated: list[int]  # device keys to publish to
    cuts: list[Cut]  # to disable: what to cut off
    finished: bool


class BulkJobService:
    def __init__(
        self,
        ctx: ServiceContext,
        devices: DeviceService,
        delivery: DeliveryService,
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if not 0 < batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_SIZE}")
        self.ctx = ctx
        self.devices = devices
        self.delivery = delivery
        self.batch_size = batch_size
        self._cursors = Cursors(ctx.hasher)
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    # -- asking and reading ------------------------------------------------------------
    def start(self, kind: str, group: str, *, actor: str, reason: str = "operator") -> JobView:
        """Queue a job of ``kind`` on every device of ``group``; 409 naming the job of that
        kind already queued or running on the group. Nothing runs yet: see ``run``."""
        if kind not in KINDS:
            raise ValidationError(f"a bulk job is one of {', '.join(KINDS)}", code="InvalidKind")
        if not 0 < len(reason) <= MAX_REASON_CHARS:
            raise ValidationError(f"give a reason of 1 to {MAX_REASON_CHARS} characters")
        try:
            with self.ctx.db.session() as s:
                found = s.exec(select(DeviceGroup).where(DeviceGroup.name == group)).first()
                if found is None or found.id is None:
                    raise NotFoundError(f"group {group!r} does not exist", code="GroupNotFound")
                total, last_pk = s.exec(
                    select(func.count(), func.max(Device.id)).where(
                        Device.group_id == found.id, _eligible(kind)
                    )
                ).one()
                now = self.ctx.clock()
                job = BulkJob(
                    kind=kind,
                    group_id=found.id,
                    group_name=found.name,
                    active_key=f"{kind}:{found.id}",
                    actor=actor[:128],
                    reason=reason,
                    total=total,
                    last_pk=last_pk or 0,
                    created_at=now,
                )
                if not total:  # nothing to do: done as soon as asked
                    job.state, job.active_key = JOB_DONE, None
                    job.started_at = job.finished_at = now
                s.add(job)
                s.flush()
                audit(s, self.ctx, actor, f"group.{kind}", found.name, job=job.id, devices=total)
                return _view(job)
        except IntegrityError:
            raise self._running_conflict(kind, group) from None

    def _running_conflict(self, kind: str, group: str) -> ConflictError:
        with self.ctx.db.session() as s:
            running = s.exec(
                select(BulkJob).where(
                    BulkJob.group_name == group,
                    BulkJob.kind == kind,
                    col(BulkJob.active_key).is_not(None),
                )
            ).first()
        if running is None:  # it ended meanwhile: asking again starts a new one
            return ConflictError(
                f"a {kind} of group {group!r} was under way; ask again", code="JobRunning"
            )
        return ConflictError(
            f"a {kind} of group {group!r} is already under way: job {running.id} "
            f"({running.state}, {running.done} of {running.total} done); follow that job",
            code="JobRunning",
        )

    def show(self, job_id: int) -> JobView:
        with self.ctx.db.session() as s:
            job = s.get(BulkJob, job_id)
            if job is None:
                raise NotFoundError(f"job {job_id} does not exist", code="JobNotFound")
            return _view(job)

    def list(self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[JobView]:
        """One page of jobs, the newest first (keyset-paged by id)."""
        check_limit(limit)
        with self.ctx.db.session() as s:
            query = select(BulkJob).order_by(col(BulkJob.id).desc()).limit(limit + 1)
            if cursor is not None:
                (before,) = self._cursors.decode(JOBS_LIST, cursor, (int,))
                query = query.where(col(BulkJob.id) < before)
            rows = s.exec(query).all()
            keys = [(j.id or 0,) for j in rows]
            return self._cursors.page(JOBS_LIST, [_view(j) for j in rows[:limit]], keys, limit)

    # -- running -----------------------------------------------------------------------
    def run_in_background(self, job_id: int) -> None:
        """Run the job in a thread of this process (it returns at once)."""
        thread = threading.Thread(
            target=self._run_quietly, args=(job_id,), name=f"fleet-job-{job_id}", daemon=True
        )
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()

    def _run_quietly(self, job_id: int) -> None:
        try:
            self.run(job_id)
        except Exception:
            log.exception("bulk job %d stopped", job_id)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def resume_abandoned(self) -> list[int]:
        """Start, in this process, the jobs whose server died (a running job's heartbeat
        older than ``STALE_AFTER``, or queued that long): the scheduler leader calls it."""
        stale = self.ctx.clock() - STALE_AFTER
        with self.ctx.db.session() as s:
            ids = s.exec(
                select(BulkJob.id)
                .where(
                    or_(
                        (col(BulkJob.state) == JOB_RUNNING) & (col(BulkJob.heartbeat_at) < stale),
                        (col(BulkJob.state) == JOB_QUEUED) & (col(BulkJob.created_at) < stale),
                    )
                )
                .order_by(col(BulkJob.id))
                .limit(RESUME_AT_ONCE)
            ).all()
        found = [i for i in ids if i is not None]
        for job_id in found:
            self.run_in_background(job_id)
        return found

    def run(self, job_id: int) -> JobView:
        """Claim the job (queued, or running with a stale heartbeat) and work it through to
        its end. Returns its view; a job another runner holds is left to it."""
        token = self._claim(job_id)
        if token is None:
            return self.show(job_id)
        beating = threading.Event()
        heart = threading.Thread(
            target=self._beat, args=(job_id, token, beating), name=f"fleet-job-{job_id}-beat"
        )
        heart.daemon = True
        heart.start()
        try:
            self._run_claimed(job_id, token)
        finally:
            beating.set()
            heart.join(HEARTBEAT_S)
        return self.show(job_id)

    def _beat(self, job_id: int, token: str, done: threading.Event) -> None:
        """Every ``HEARTBEAT_S`` while the job runs, so that a batch slow to settle (a broker
        taking seconds per login) is not taken for a dead server's; stops once it is not
        this runner's any more."""
        while not done.wait(HEARTBEAT_S):
            try:
                with self.ctx.db.session() as s:
                    held = s.exec(
                        update(BulkJob)
                        .where(col(BulkJob.id) == job_id, col(BulkJob.claim_token) == token)
                        .values(heartbeat_at=self.ctx.clock())
                    ).rowcount
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("bulk job %d: heartbeat failed", job_id, exc_info=True)
                continue
            if not held:
                return

    def _run_claimed(self, job_id: int, token: str) -> None:
        try:
            self._settle_left_over(job_id, token)
            while not self._stopping.is_set():
                batch = self._next_batch(job_id, token)
                self._settle(job_id, token, batch)
                if batch.finished:
                    self._finish(job_id, token, JOB_DONE, None)
                    break
            else:  # this process is stopping: another one takes it up again
                self._release(job_id, token)
        except LostClaim:
            log.warning("bulk job %d was taken over by another server", job_id)
        except Exception as exc:
            log.exception("bulk job %d failed", job_id)
            self._finish(job_id, token, JOB_FAILED, f"{exc.__class__.__name__}: {exc}"[:512])

    def stop(self, timeout_s: float = 5.0) -> None:
        """No new batch in this process; the jobs under way are released after theirs."""
        self._stopping.set()
        self.wait_idle(timeout_s)

    def wait_idle(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s`` each) for the jobs this process runs in the background."""
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)

    def _claim(self, job_id: int) -> str | None:
        token = str(uuid.uuid4())
        now = self.ctx.clock()
        with self.ctx.db.session() as s:
            won = s.exec(
                update(BulkJob)
                .where(
                    col(BulkJob.id) == job_id,
                    or_(
                        col(BulkJob.state) == JOB_QUEUED,
                        (col(BulkJob.state) == JOB_RUNNING)
                        & (col(BulkJob.heartbeat_at) < now - STALE_AFTER),
                    ),
                )
                .values(
                    state=JOB_RUNNING,
                    claim_token=token,
                    heartbeat_at=now,
                    started_at=func.coalesce(BulkJob.started_at, now),
                )
            ).rowcount
        return token if won else None

    def _hold(self, s: Session, job_id: int, token: str) -> BulkJob:
        """The job's row, locked in ``s`` with its heartbeat moved; ``LostClaim`` when it is
        no longer this runner's."""
        held = s.exec(
            update(BulkJob)
            .where(col(BulkJob.id) == job_id, col(BulkJob.claim_token) == token)
            .values(heartbeat_at=self.ctx.clock())
        ).rowcount
        if not held:
            raise LostClaim(job_id)
        job = s.exec(
            select(BulkJob)
            .where(col(BulkJob.id) == job_id)
            .execution_options(populate_existing=True)
        ).one()
        return job

    def _page(self, s: Session, job: BulkJob, after: int, limit: int) -> list[Device]:
        return list(
            s.exec(
                select(Device)
                .where(
                    Device.group_id == job.group_id,
                    col(Device.id) > after,
                    col(Device.id) <= job.last_pk,
                    _eligible(job.kind),
                )
                .order_by(col(Device.id))
                .limit(limit)
            ).all()
        )

    def _next_batch(self, job_id: int, token: str) -> _Batch:
        try:
            with self.ctx.db.session() as s:
                job = self._hold(s, job_id, token)
                low = job.cursor_pk
                page = self._page(s, job, low, self.batch_size)
                rotated, cuts = self._apply(s, job, page)
                return self._advance(job, low, page, rotated, cuts)
        except LostClaim:
            raise
        except Exception as exc:  # one device's rows failed: the batch again, one by one
            log.warning("bulk job %d: a batch failed (%s); device by device", job_id, exc)
            return self._one_by_one(job_id, token)

    def _apply(
        self, s: Session, job: BulkJob, page: Sequence[Device]
    ) -> tuple[list[int], list[Cut]]:
        """The rows of one page, in ``s``; counts what was skipped or refused on ``job``."""
        assert job.id is not None
        if not page:
            return [], []
        if job.kind == ROTATE:
            rotated, skipped = self.devices.rotate_page(s, page, actor=job.actor, job=job.id)
            job.done += len(rotated)
            job.skipped += skipped
            return rotated, []
        cuts, skipped, refused = self.devices.disable_page(
            s, page, actor=job.actor, reason=job.reason, job=job.id
        )
        job.done += len(cuts)
        job.skipped += skipped
        _record_failures(job, refused)
        return [], cuts

    def _advance(
        self,
        job: BulkJob,
        low: int,
        page: Sequence[Device],
        rotated: list[int],
        cuts: list[Cut],
    ) -> _Batch:
        finished = len(page) < self.batch_size
        high = job.last_pk if finished or not page else (page[-1].id or low)
        job.cursor_pk = high
        return _Batch(low, high, rotated, cuts, finished)

    def _one_by_one(self, job_id: int, token: str) -> _Batch:
        """The next page, a device per transaction: a device whose rows fail is counted and
        listed, and the cursor moves past it all the same."""
        with self.ctx.db.session() as s:
            job = self._hold(s, job_id, token)
            low = job.cursor_pk
            keys = [d.id for d in self._page(s, job, low, self.batch_size)]
        rotated: list[int] = []
        cuts: list[Cut] = []
        for pk in keys:
            try:
                with self.ctx.db.session() as s:
                    job = self._hold(s, job_id, token)
                    device = s.get(Device, pk)
                    got_rotated, got_cuts = self._apply(s, job, [device] if device else [])
                    job.cursor_pk = pk or job.cursor_pk
                rotated += got_rotated
                cuts += got_cuts
            except LostClaim:
                raise
            except Exception as exc:
                with self.ctx.db.session() as s:
                    job = self._hold(s, job_id, token)
                    device = s.get(Device, pk)
                    name = device.device_id if device else f"#{pk}"
                    _record_failures(job, [(name, f"{exc.__class__.__name__}: {exc}")])
                    job.cursor_pk = pk or job.cursor_pk
        with self.ctx.db.session() as s:
            job = self._hold(s, job_id, token)
            finished = len(keys) < self.batch_size
            if finished:
                job.cursor_pk = job.last_pk
            return _Batch(low, job.cursor_pk, rotated, cuts, finished)

    def _settle(self, job_id: int, token: str, batch: _Batch) -> None:
        """After a batch committed: publish its envelopes, cut its broker logins, and record
        the logins the broker refused; then the range is settled."""
        failures: list[tuple[str, str]] = []
        if batch.rotated:
            self._publish(batch.rotated)
        if batch.cuts:
            refused = self.devices.cut_off(batch.cuts)
            if refused:
                names = self._names(list(refused))
                failures = [
                    (
                        names.get(pk, f"#{pk}"),
                        f"registry token disabled, but the broker login is not: {e.message}",
                    )
                    for pk, e in refused.items()
                ]
        with self.ctx.db.session() as s:
            job = self._hold(s, job_id, token)
            job.done -= len(failures)
            _record_failures(job, failures)
            job.settled_pk = max(job.settled_pk, batch.high)

    def _publish(self, device_pks: list[int]) -> None:
        """Publish what these devices have pending; a broker failure leaves it to the
        delivery service's retries (the rotation itself is done)."""
        self.delivery.publish_pending(device_pks)

    def _settle_left_over(self, job_id: int, token: str) -> None:
        """A range a dead runner committed but never settled: published again (to rotate),
        wipes published and logins cut again (to disable). Both are idempotent."""
        with self.ctx.db.session() as s:
            job = self._hold(s, job_id, token)
            low, high, kind, group_id = job.settled_pk, job.cursor_pk, job.kind, job.group_id
        while low < high:
            with self.ctx.db.session() as s:
                rows = s.exec(
                    select(Device.id, Device.mqtt_username, Device.status)
                    .where(
                        Device.group_id == group_id,
                        col(Device.id) > low,
                        col(Device.id) <= high,
                    )
                    .order_by(col(Device.id))
                    .limit(self.batch_size)
                ).all()
            if not rows:
                break
            upper = rows[-1][0] if len(rows) == self.batch_size else high
            if kind == ROTATE:
                self._publish([pk for pk, _, st in rows if pk is not None and st == ACTIVE])
                settled = _Batch(low, upper, [], [], False)
            else:
                cuts = [Cut(pk, user, None) for pk, user, st in rows if st == DISABLED and pk]
                settled = _Batch(low, upper, [], cuts, False)
            self._settle(job_id, token, settled)
            low = upper

    def _names(self, device_pks: list[int]) -> dict[int, str]:
        with self.ctx.db.session() as s:
            rows = s.exec(
                select(Device.id, Device.device_id).where(col(Device.id).in_(device_pks))
            ).all()
        return {pk: name for pk, name in rows if pk is not None}

    def _finish(self, job_id: int, token: str, state: str, message: str | None) -> None:
        """The job's end. Done: the devices counted at the start but not found eligible any
        more when their page was read (disabled or deleted meanwhile) are the skipped ones."""
        with self.ctx.db.session() as s:
            job = s.exec(
                select(BulkJob).where(col(BulkJob.id) == job_id, BulkJob.claim_token == token)
            ).first()
            if job is None:
                return
            if state == JOB_DONE:
                job.skipped = max(job.skipped, job.total - job.done - job.failed)
            job.state, job.active_key, job.claim_token = state, None, None
            job.finished_at, job.message = self.ctx.clock(), message
            s.add(job)

    def _release(self, job_id: int, token: str) -> None:
        """Back to queued, for the next server's scheduler to take up."""
        with self.ctx.db.session() as s:
            s.exec(
                update(BulkJob)
                .where(col(BulkJob.id) == job_id, col(BulkJob.claim_token) == token)
                .values(state=JOB_QUEUED, claim_token=None)
            )
