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
from typing import Any

import requests
from sqlalchemy import delete as sql_delete
from sqlalchemy import or_
from sqlmodel import col, select

from fleet.db.devices import ACTIVE, Device, DeviceGroup
from fleet.db.models import ENABLED, Token, TokenPassword
from fleet.services.context import ServiceContext, audit
from fleet.services.delivery import DeliveryService
from fleet.services.devices import DeviceService

log = logging.getLogger(__name__)

BATCH = 500
SCHEDULER_ACTOR = "scheduler"
WEBHOOK_TIMEOUT_S = 5


@dataclass
class PassSummary:
    rotated: int = 0
    retired: int = 0
    tokens_disabled: int = 0
    devices_disabled_inactive: int = 0
    warnings: int = 0
    published: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class Reconciler:
    def __init__(
        self, ctx: ServiceContext, devices: DeviceService, delivery: DeliveryService
    ) -> None:
        self.ctx = ctx
        self.devices = devices
        self.delivery = delivery

    def run_pass(self) -> PassSummary:
        now = self.ctx.clock()
        summary = PassSummary()
        summary.rotated = self._batches(lambda: self._rotate(now))
        summary.retired = self._batches(lambda: self._retire(now))
        summary.tokens_disabled = self._disable_planned(now)
        summary.devices_disabled_inactive = self._disable_inactive(now)
        summary.warnings = self._batches(lambda: self._warn(now))
        summary.published = self.delivery.publish_due()
        return summary

    @staticmethod
    def _batches(step: Callable[[], int]) -> int:
        total = 0
        while True:
            done = step()
            total += done
            if done < BATCH:
                return total

    def _rotate(self, now: datetime) -> int:
        with self.ctx.db.session() as s:
            due = s.exec(
                select(Device)
                .where(Device.status == ACTIVE, col(Device.rotate_due_at) <= now)
                .order_by(col(Device.rotate_due_at))
                .limit(BATCH)
            ).all()
            self.devices.rotation.issue(s, due)
            for device in due:
                if device.token_id is None:  # nothing to rotate: stop asking
                    device.rotate_due_at = None
                    s.add(device)
        return len(due)

    def _retire(self, now: datetime) -> int:
        with self.ctx.db.session() as s:
            due = s.exec(select(Device).where(col(Device.retire_due_at) <= now).limit(BATCH)).all()
            for device in due:
                if device.retire_slot and device.retire_slot != device.active_slot:
                    s.exec(
                        sql_delete(TokenPassword).where(
                            col(TokenPassword.token_id) == device.token_id,
                            col(TokenPassword.slot) == device.retire_slot,
                        )
                    )
                device.retire_slot = device.retire_due_at = None
                s.add(device)
            return len(due)

    def _disable_planned(self, now: datetime) -> int:
        with self.ctx.db.session() as s:
            due = s.exec(
                select(Token).where(col(Token.disable_at) <= now, Token.status == ENABLED)
            ).all()
            owners = (
                dict(
                    s.exec(
                        select(Device.token_id, Device.device_id).where(
                            col(Device.token_id).in_([t.id for t in due])
                        )
                    ).all()
                )
                if due
                else {}
            )
            plain = [t for t in due if t.id not in owners]
            for token in plain:
                token.status, token.disable_at, token.updated_at = "disabled", None, now
                s.add(token)
                audit(s, self.ctx, SCHEDULER_ACTOR, "token.disable.planned", token.name)
        for device_id in owners.values():
            self.devices.disable(device_id, actor=SCHEDULER_ACTOR, reason="planned")
        return len(due)

    def _disable_inactive(self, now: datetime) -> int:
        with self.ctx.db.session() as s:
            groups = s.exec(
                select(DeviceGroup).where(col(DeviceGroup.inactivity_limit_days).is_not(None))
            ).all()
            silent: list[str] = []
            for group in groups:
                cutoff = now - timedelta(days=group.inactivity_limit_days or 0)
                silent += s.exec(
                    select(Device.device_id).where(
                        Device.group_id == group.id,
                        Device.status == ACTIVE,
                        or_(
                            col(Device.last_seen_at) < cutoff,
                            col(Device.last_seen_at).is_(None) & (col(Device.enrolled_at) < cutoff),
                        ),
                    )
                ).all()
        for device_id in silent:
            self.devices.disable(device_id, actor=SCHEDULER_ACTOR, reason="inactive")
        return len(silent)

    def _warn(self, now: datetime) -> int:
        events: list[dict[str, Any]] = []
        with self.ctx.db.session() as s:
            due = s.exec(
                select(Device)
                .where(col(Device.warn_due_at) <= now, Device.status == ACTIVE)
                .limit(BATCH)
            ).all()
            for device in due:
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
                device.warn_due_at = None
                s.add(device)
                events.append(event)
        for event in events:
            self._webhook(event)
        return len(due)

    def _webhook(self, event: dict[str, Any]) -> None:
        url = self.ctx.settings.warning_webhook_url
        if not url:
            return
        try:
            requests.post(url, json=event, timeout=WEBHOOK_TIMEOUT_S).raise_for_status()
        except requests.RequestException as exc:
            log.warning("warning webhook for %s failed: %s", event["deviceId"], exc)
