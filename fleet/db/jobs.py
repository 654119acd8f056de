"""Bulk jobs: one operator request acting on every device of a group, in the background.

A job is a row so that any server can answer for it and it outlives the process running it:
``cursor_pk`` is the highest device primary key whose rows are committed (advanced in the
batch's own transaction), ``settled_pk`` the highest whose after-commit work (publishing,
cutting broker logins) is done. ``active_key`` is set while the job is queued or running and
unique, so the database itself refuses a second running job of one kind on one group.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from fleet.db.types import optional_when_field, when_field

JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED)


class BulkJob(SQLModel, table=True):
    __tablename__ = "bulk_jobs"
    # The abandoned ones are found by state and heartbeat; a group's by its id.
    __table_args__ = (
        Index("ix_bulk_jobs_state_heartbeat_at", "state", "heartbeat_at"),
        Index("ix_bulk_jobs_group_id_id", "group_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    group_id: int  # no foreign key: the job's record outlives the group
    group_name: str = Field(max_length=64)
    state: str = Field(default=JOB_QUEUED, max_length=16)
    active_key: str | None = Field(default=None, max_length=48, unique=True)
    actor: str = Field(max_length=128)
    reason: str = Field(default="operator", max_length=256)
    total: int = Field(default=0)
    done: int = Field(default=0)
    skipped: int = Field(default=0)
    failed: int = Field(default=0)
    errors: str = Field(default="[]", max_length=4096)  # JSON, a bounded list
    last_pk: int = Field(default=0)  # the group's highest device key when the job was made
    cursor_pk: int = Field(default=0)
    settled_pk: int = Field(default=0)
    claim_token: str | None = Field(default=None, max_length=36)
    heartbeat_at: datetime | None = optional_when_field()
    message: str | None = Field(default=None, max_length=512)
    created_at: datetime = when_field()
    started_at: datetime | None = optional_when_field()
    finished_at: datetime | None = optional_when_field()
