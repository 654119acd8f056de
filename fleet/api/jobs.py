"""Bulk jobs: rotate or disable every device of a group in one request, then follow it.

``POST /groups/{name}/rotate`` and ``/disable`` answer 202 with the job (and a ``Location``)
as soon as its row is made; this server works it in the background. ``GET /jobs/{id}`` is
answered by any server from the database. A second request while a job of that kind runs on
the group is a 409 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from fleet.api.auth import actor, services
from fleet.api.paging import NEXT_CURSOR, page_args, page_json
from fleet.api.rest import PREFIX, api
from fleet.api.schemas import ApiModel
from fleet.domain.errors import ValidationError
from fleet.services.bulk_jobs import DISABLE, MAX_REASON_CHARS, ROTATE, JobView

TAG = "jobs"


class JobErrorOut(ApiModel):
    device_id: str
    message: str


class JobOut(ApiModel):
    id: int
    kind: str = Field(description="rotate or disable")
    group: str
    state: str = Field(description="queued, running, done or failed")
    total: int = Field(description="The group's devices the job acts on, counted when asked")
    done: int
    skipped: int = Field(description="No longer active (rotate) or disabled already")
    failed: int
    errors: list[JobErrorOut] = Field(description="The first failed devices (at most 20)")
    actor: str = Field(description="Who asked")
    reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None = Field(description="Why a failed job stopped")
    url: str


class JobList(ApiModel):
    value: list[JobOut]
    next_cursor: str | None = NEXT_CURSOR


class DisableGroupRequest(ApiModel):
    reason: str = Field(default="operator", min_length=1, max_length=MAX_REASON_CHARS)


def job_json(view: JobView) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": view.id,
        "kind": view.kind,
        "group": view.group,
        "state": view.state,
        "total": view.total,
        "done": view.done,
        "skipped": view.skipped,
        "failed": view.failed,
        "errors": [{"deviceId": e.device_id, "message": e.message} for e in view.errors],
        "actor": view.actor,
        "reason": view.reason,
        "createdAt": when(view.created_at),
        "startedAt": when(view.started_at),
        "finishedAt": when(view.finished_at),
        "message": view.message,
        "url": f"{PREFIX}/jobs/{view.id}",
    }


def _start(kind: str, group: str, reason: str) -> Any:
    svc = services()
    view = svc.jobs.start(kind, group, actor=actor(), reason=reason)
    if not view.finished:
        svc.jobs.run_in_background(view.id)
    return job_json(view), 202, {"Location": f"{PREFIX}/jobs/{view.id}"}


@api.operation(
    "/groups/<name>/rotate",
    "POST",
    summary="Rotate every active device of a group, in the background: 202 with the job",
    tag=TAG,
    status=202,
    response=JobOut,
)
def rotate_group(name: str) -> Any:
    return _start(ROTATE, name, "operator")


@api.operation(
    "/groups/<name>/disable",
    "POST",
    summary="Disable every device of a group, in the background: 202 with the job "
    '(optional body {"reason": "..."})',
    tag=TAG,
    status=202,
    response=JobOut,
)
def disable_group(name: str) -> Any:
    payload = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(payload, dict):
        raise ValidationError("the request body must be a JSON object (or none)")
    try:
        body = DisableGroupRequest.model_validate(payload)
    except PydanticValidationError as exc:
        raise ValidationError(exc.errors()[0]["msg"]) from None
    return _start(DISABLE, name, body.reason)


@api.operation("/jobs/<int:job_id>", "GET", summary="Show a bulk job", tag=TAG, response=JobOut)
def show_job(job_id: int) -> Any:
    return job_json(services().jobs.show(job_id))


@api.operation(
    "/jobs",
    "GET",
    summary="List bulk jobs, the newest first",
    tag=TAG,
    response=JobList,
    paged=True,
)
def list_jobs() -> Any:
    return page_json(services().jobs.list(**page_args()), job_json)
