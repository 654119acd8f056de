"""What the scheduler did last, when it runs next, and what the webhook's outbox holds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from fleet.api.auth import services
from fleet.api.rest import api
from fleet.api.schemas import ApiModel
from fleet.services.outbox import OutboxStatus
from fleet.services.scheduler_runs import RunRecord


class RunOut(ApiModel):
    started_at: datetime
    finished_at: datetime | None
    node: str
    summary: dict[str, int]
    error: str | None


class OutboxOut(ApiModel):
    webhook_configured: bool
    pending: int = Field(description="Warning webhook events not yet sent (nor given up)")
    oldest_pending_seconds: float | None = Field(description="Age of the oldest pending event")
    given_up: int = Field(description="Events given up and not yet pruned")
    last_error: str | None
    last_error_at: datetime | None


class SchedulerStatus(ApiModel):
    enabled: bool
    interval_seconds: int
    last_run: RunOut | None
    next_run: datetime | None = Field(description="Estimated: the last start plus the interval")
    recent_runs: list[RunOut]
    outbox: OutboxOut


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "node": run.node,
        "summary": json.loads(run.summary or "{}"),
        "error": run.error,
    }


@api.operation(
    "/scheduler",
    "GET",
    summary="The scheduler's last runs and its next one",
    tag="scheduler",
    response=SchedulerStatus,
)
def scheduler_status() -> Any:
    svc = services()
    settings = svc.ctx.settings
    runs = svc.scheduler_runs.recent()
    interval = settings.scheduler_interval_seconds
    last = runs[0] if runs else None
    return {
        "enabled": settings.scheduler_enabled.lower() in ("1", "true", "yes", "on"),
        "intervalSeconds": interval,
        "lastRun": run_json(last) if last else None,
        "nextRun": (last.started_at + timedelta(seconds=interval)).isoformat() if last else None,
        "recentRuns": [run_json(r) for r in runs],
        "outbox": outbox_json(svc.ctx.settings.warning_webhook_url != "", svc.webhook.status()),
    }


def outbox_json(configured: bool, state: OutboxStatus) -> dict[str, Any]:
    return {
        "webhookConfigured": configured,
        "pending": state.pending,
        "oldestPendingSeconds": state.oldest_pending_seconds,
        "givenUp": state.given_up,
        "lastError": state.last_error,
        "lastErrorAt": state.last_error_at.isoformat() if state.last_error_at else None,
    }
