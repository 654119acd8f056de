"""The record of the scheduler's passes: one row a pass, written when it starts and when it
ends, read back by ``GET /scheduler`` (and ``fleet scheduler status``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from fleet.db.models import SchedulerRun
from fleet.services.context import ServiceContext
from fleet.services.reconciler import PassSummary

MAX_ERROR = 1000
RECENT_RUNS = 10


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One pass as recorded: ``summary`` is the JSON text of its :class:`PassSummary`."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    node: str
    summary: str
    error: str | None


def _record(run: SchedulerRun) -> RunRecord:
    assert run.id is not None
    return RunRecord(run.id, run.started_at, run.finished_at, run.node, run.summary, run.error)


class SchedulerRunService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def start(self, node: str) -> int:
        """Record a pass starting now on ``node``; the run's id, for :meth:`finish`."""
        with self.ctx.db.session() as s:
            run = SchedulerRun(started_at=self.ctx.clock(), node=node)
            s.add(run)
            s.flush()
            assert run.id is not None
            return run.id

    def finish(self, run_id: int, summary: PassSummary | None, error: str | None) -> None:
        """Record the end of a pass: what it did, or the error that ended it (cut short)."""
        with self.ctx.db.session() as s:
            run = s.get(SchedulerRun, run_id)
            if run is not None:
                run.finished_at = self.ctx.clock()
                run.summary = summary.as_json() if summary else "{}"
                run.error = error[:MAX_ERROR] if error is not None else None
                s.add(run)

    def recent(self, limit: int = RECENT_RUNS) -> list[RunRecord]:
        """The last ``limit`` passes, newest first."""
        with self.ctx.db.session() as s:
            rows = s.exec(
                select(SchedulerRun).order_by(col(SchedulerRun.id).desc()).limit(limit)
            ).all()
            return [_record(r) for r in rows]
