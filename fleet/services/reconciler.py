"""One idempotent pass over the database that keeps every device's credentials alive.

Each kind of work is read through an index on its due time, in batches, each batch in one
transaction: a pass costs what is due, not what the fleet holds, and a pass killed at any
instant leaves each device either done or not done, never done twice. Runs missed while no
scheduler was up are simply due on the next pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import or_
from sqlmodel import col, select

from fleet.db.devices import ACTIVE, Device, DeviceGroup
from fleet.db.models import ENABLED, Token, TokenPassword
from fleet.services import outbox
from fleet.services.context import ServiceContext, audit
from fleet.services.delivery import DeliveryService
from fleet.services.devices import DeviceService
from fleet.services.revocation import ends_detail, revoke
from fleet.services.rotation import lock_devices

log = logging.getLogger(__name__)

BATCH = 500
SCHEDULER_ACTOR = "scheduler"


@dataclass
class PassSummary:
    rotated: int = 0
    retired: int = 0
    tokens_disabled: int = 0
    devices_disabled_inactive: int = 0
    warnings: int = 0
    published: int = 0
    # Rows (devices, tokens, groups) whose work failed; each was logged and left for the next
    # pass. Steps that failed as a whole (the rest of the pass still ran).
    skipped: int = 0
    failed_steps: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


Row = tuple[int, str]  # a primary key, and the name the log gives the row


class Reconciler:
    """Each step's failure, and each row's, stays its own: it is logged, skipped for the rest
    of the pass and tried again on the next one, while every other row is still served."""

    def __init__(
        self, ctx: ServiceContext, devices: DeviceService, delivery: DeliveryService
    ) -> None:
        self.ctx = ctx
        self.devices = devices
        self.delivery = delivery
        self._published_early = 0  # this pass's rotations published as their batch committed

    def run_pass(self) -> PassSummary:
        now = self.ctx.clock()
        summary = PassSummary()
        self._published_early = 0
        summary.rotated = self._rows(
            "rotation of device", summary, partial(self._due_rotation, now), self._rotate
        )
        summary.retired = self._rows(
            "retirement of an old password of device",
            summary,
            partial(self._due_retirement, now),
            self._retire,
        )
        summary.tokens_disabled = self._rows(
            "planned disable of token",
            summary,
            partial(self._due_disable, now),
            self._disable_planned,
        )
        summary.devices_disabled_inactive = self._step(
            "inactivity", summary, partial(self._disable_inactive, now, summary)
        )
        summary.warnings = self._rows(
            "expiry warning of device", summary, partial(self._due_warning, now), self._warn
        )
        summary.published = self._published_early + self._step(
            "publishing", summary, self.delivery.publish_due
        )
        return summary

    @staticmethod
    def _step(what: str, summary: PassSummary, run: Callable[[], int]) -> int:
        """A step that fails as a whole is logged; the pass goes on with the next one."""
        try:
            return run()
        except Exception:
            log.exception("the %s step of the reconciler pass failed; the pass goes on", what)
            summary.failed_steps += 1
            return 0

    def _rows(
        self,
        what: str,
        summary: PassSummary,
        due: Callable[[set[int]], list[Row]],
        act: Callable[[list[int]], None],
    ) -> int:
        """Batch after batch of due rows, each batch in one go; a batch that fails is done
        again row by row, and a row that fails alone is logged and skipped for this pass."""
        skip: set[int] = set()
        done = 0

        def one_by_one(rows: list[Row]) -> int:
            ok = 0
            for pk, name in rows:
                try:
                    act([pk])
                    ok += 1
                except Exception as exc:
                    log.warning(
                        "%s %s failed and is skipped until the next pass: %s: %s",
                        what,
                        name,
                        exc.__class__.__name__,
                        exc,
                        exc_info=True,
                    )
                    skip.add(pk)
                    summary.skipped += 1
            return ok

        def batches() -> int:
            nonlocal done
            while True:
                rows = due(skip)
                if rows:
                    try:
                        act([pk for pk, _ in rows])
                        done += len(rows)
                    except Exception:
                        done += one_by_one(rows)
                if len(rows) < BATCH:
                    return done

        self._step(what, summary, batches)
        return done

    def _due_devices(self, where: list[Any], order: Any, skip: set[int]) -> list[Row]:
        with self.ctx.db.session() as s:
            query = select(Device.id, Device.device_id).where(*where)
            if skip:
                query = query.where(col(Device.id).not_in(skip))
            if order is not None:
                query = query.order_by(order)
            return [(pk, name) for pk, name in s.exec(query.limit(BATCH)).all()]  # type: ignore[misc]

    def _load(self, s: Any, pks: list[int]) -> list[Device]:
        rows = s.exec(select(Device).where(col(Device.id).in_(pks))).all()
        order = {pk: i for i, pk in enumerate(pks)}
        return sorted(rows, key=lambda d: order[d.id])

    # -- rotation ---------------------------------------------------------------------------
    def _due_rotation(self, now: datetime, skip: set[int]) -> list[Row]:
        return self._due_devices(
            [Device.status == ACTIVE, col(Device.rotate_due_at) <= now],
            col(Device.rotate_due_at),
            skip,
        )

    def _rotate(self, pks: list[int]) -> None:
        """Rotate the devices of ``pks`` that are still due once their rows are locked.

        ``pks`` were read before the lock: another pass (a second server that took the
        leadership while this one's lock connection was lost mid-pass) may have rotated them
        since, moving ``rotate_due_at`` on. Checked again under the row lock (PostgreSQL) or
        the write lock (SQLite), a device is rotated once whatever the passes' interleaving."""
        with self.ctx.db.session() as s:
            now = self.ctx.clock()
            due = [
                d
                for d in lock_devices(s, self._load(s, pks))
                if d.rotate_due_at is not None and d.rotate_due_at <= now
            ]
            self.devices.rotation.issue(s, due)
            for device in due:
                if device.token_id is None:  # nothing to rotate: stop asking
                    device.rotate_due_at = None
                    s.add(device)
        # Published batch by batch, right after its commit: devices acknowledge while the pass
        # seals the next batches, instead of waiting for the whole rotation step. The batch is
        # committed, so nothing here may fail it (it would be rotated again, row by row): what
        # is not published now is left pending, for the publishing step and its backoff.
        try:
            self._published_early += self.delivery.publish_pending(pks)
        except Exception:
            log.exception(
                "publishing %d rotated devices failed; the publishing step retries", len(pks)
            )

    # -- retirement of the old slot ------------------------------------------------------
    def _due_retirement(self, now: datetime, skip: set[int]) -> list[Row]:
        return self._due_devices([col(Device.retire_due_at) <= now], None, skip)

    def _retire(self, pks: list[int]) -> None:
        with self.ctx.db.session() as s:
            for device in self._load(s, pks):
                if device.retire_slot and device.retire_slot != device.active_slot:
                    s.exec(
                        sql_delete(TokenPassword).where(
                            col(TokenPassword.token_id) == device.token_id,
                            col(TokenPassword.slot) == device.retire_slot,
                        )
                    )
                device.retire_slot = device.retire_due_at = None
                s.add(device)

    # -- planned disable ------------------------------------------------------------------
    def _due_disable(self, now: datetime, skip: set[int]) -> list[Row]:
        with self.ctx.db.session() as s:
            query = select(Token.id, Token.name).where(
                col(Token.disable_at) <= now, Token.status == ENABLED
            )
            if skip:
                query = query.where(col(Token.id).not_in(skip))
            return [(pk, name) for pk, name in s.exec(query.limit(BATCH)).all()]  # type: ignore[misc]

    def _disable_planned(self, pks: list[int]) -> None:
        now = self.ctx.clock()
        with self.ctx.db.session() as s:
            due = s.exec(select(Token).where(col(Token.id).in_(pks))).all()
            owners = dict(
                s.exec(
                    select(Device.token_id, Device.device_id).where(col(Device.token_id).in_(pks))
                ).all()
            )
            for token in due:
                if token.id not in owners:
                    ends_by = revoke(s, self.ctx, token)
                    token.status, token.disable_at, token.updated_at = "disabled", None, now
                    s.add(token)
                    audit(
                        s,
                        self.ctx,
                        SCHEDULER_ACTOR,
                        "token.disable.planned",
                        token.name,
                        **ends_detail(ends_by),
                    )
        for device_id in owners.values():
            self.devices.disable(device_id, actor=SCHEDULER_ACTOR, reason="planned")

    # -- inactivity -----------------------------------------------------------------------
    def _disable_inactive(self, now: datetime, summary: PassSummary) -> int:
        with self.ctx.db.session() as s:
            groups = s.exec(
                select(DeviceGroup.id, DeviceGroup.name, DeviceGroup.inactivity_limit_days).where(
                    col(DeviceGroup.inactivity_limit_days).is_not(None)
                )
            ).all()
            silent: list[str] = []
            for group_id, name, days in groups:
                try:
                    cutoff = now - timedelta(days=days or 0)
                except (OverflowError, ValueError) as exc:
                    log.warning(
                        "the inactivity check of group %s is skipped: its limit of %s days "
                        "cannot be applied (%s)",
                        name,
                        days,
                        exc,
                    )
                    summary.skipped += 1
                    continue
                silent += s.exec(
                    select(Device.device_id).where(
                        Device.group_id == group_id,
                        Device.status == ACTIVE,
                        or_(
                            col(Device.last_seen_at) < cutoff,
                            col(Device.last_seen_at).is_(None) & (col(Device.enrolled_at) < cutoff),
                        ),
                    )
                ).all()
        disabled = 0
        for device_id in silent:
            try:
                self.devices.disable(device_id, actor=SCHEDULER_ACTOR, reason="inactive")
                disabled += 1
            except Exception as exc:
                log.warning(
                    "disabling inactive device %s failed and is skipped until the next pass: "
                    "%s: %s",
                    device_id,
                    exc.__class__.__name__,
                    exc,
                    exc_info=True,
                )
                summary.skipped += 1
        return disabled

    # -- expiry warnings ------------------------------------------------------------------
    def _due_warning(self, now: datetime, skip: set[int]) -> list[Row]:
        return self._due_devices(
            [col(Device.warn_due_at) <= now, Device.status == ACTIVE], None, skip
        )

    def _warn(self, pks: list[int]) -> None:
        """The audit row and the webhook's outbox row of each warning, in one transaction;
        the webhook itself is sent off the pass (fleet/services/outbox.py)."""
        with self.ctx.db.session() as s:
            for device in self._load(s, pks):
                event = {
                    "event": "device.credentials.expiring",
                    "deviceId": device.device_id,
                    "expiry": device.active_expiry.isoformat() if device.active_expiry else None,
                    "slot": device.active_slot,
                }
                audit(
                    s,
                    self.ctx,
                    SCHEDULER_ACTOR,
                    "device.credentials.expiring",
                    device.device_id,
                    expiry=event["expiry"],
                    slot=device.active_slot,
                )
                outbox.enqueue(s, self.ctx, event)
                device.warn_due_at = None
                s.add(device)
