"""Disable (one or a page at once), enable and delete: the registry token and the broker
login are cut or opened together, and a disabled device is told to wipe its credentials."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete as sql_delete
from sqlalchemy import update
from sqlmodel import Session, col, select

from fleet.db.devices import (
    ACTIVE,
    DELIVERY_PENDING,
    DELIVERY_SUPERSEDED,
    DISABLED,
    ENROLLING,
    Delivery,
    Device,
    DeviceGroup,
)
from fleet.db.models import DISABLED as TOKEN_DISABLED
from fleet.db.models import Token, TokenPassword
from fleet.domain.errors import ConflictError, ValidationError
from fleet.mqtt.errors import BrokerError
from fleet.services.context import audit
from fleet.services.devices.base import DeviceParts, get_device
from fleet.services.revocation import AccessEnd, access_end, ends_detail, revoke
from fleet.services.rotation import lock_devices
from fleet.services.views import DeviceView, DisableResult

# Before its broker login is disabled, a device seen this recently gets this long to
# acknowledge its wipe command (its registry token is cut at once regardless).
RECENTLY_SEEN = timedelta(minutes=10)
WIPE_WAIT_S = 3.0
ACK_POLL_S = 0.1
MAX_BULK = 100  # devices disabled by one bulk request: a page of the list


@dataclass(frozen=True, slots=True)
class Cut:
    """A device whose disable committed: what is left to do outside the transaction."""

    device_pk: int
    username: str
    wipe_id: int | None  # wait for this delivery's acknowledgement (the device is online)
    ends_by: datetime | None = None  # when the registry refuses the last JWT issued to it


def _check_disabled(device: Device) -> None:
    if device.status != DISABLED:
        raise ConflictError(
            f"device {device.device_id!r} is {device.status}, not disabled", code="NotDisabled"
        )


class DeviceLifecycle(DeviceParts):
    def disable(self, device_id: str, *, actor: str, reason: str = "operator") -> DeviceView:
        """Cut the registry token and the broker login at once, and tell the device to wipe."""
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            if device.status == ENROLLING:  # for a moment: its broker login is being made
                raise ConflictError(
                    f"device {device_id!r} is enrolling; disable it once that has finished",
                    code="Enrolling",
                )
            cut = self._disable_rows(s, device, actor, reason)
        for exc in self._cut_off([cut]).values():
            raise exc
        return self.show(device_id)

    def disable_many(
        self, device_ids: Sequence[str], *, actor: str, reason: str
    ) -> list[DisableResult]:
        """Disable each device (at most ``MAX_BULK`` a call), each in its own transaction.

        A device already disabled is left as it is, one deleted meanwhile is reported; the
        wipes are published together and the broker logins cut after one shared wait for
        the online devices' acknowledgements, so the call lasts seconds, not seconds each.
        """
        ids = list(dict.fromkeys(device_ids))
        if not 0 < len(ids) <= MAX_BULK:
            raise ValidationError(
                f"select 1 to {MAX_BULK} devices to disable (got {len(ids)})",
                code="InvalidSelection",
            )
        results: dict[str, DisableResult] = {}
        cuts: dict[str, Cut] = {}
        for device_id in ids:
            with self.ctx.db.session() as s:
                device = s.exec(select(Device).where(Device.device_id == device_id)).first()
                if device is None:
                    results[device_id] = DisableResult(
                        device_id, "not found", "it does not exist (deleted meanwhile?)"
                    )
                elif device.status == DISABLED:
                    results[device_id] = DisableResult(
                        device_id, "already disabled", "left as it was"
                    )
                elif device.status == ENROLLING:
                    results[device_id] = DisableResult(
                        device_id, "not disabled", "it is enrolling; disable it again"
                    )
                else:
                    cut = self._disable_rows(s, device, actor, reason)
                    cuts[device_id] = cut
                    results[device_id] = DisableResult(
                        device_id, "disabled", access=access_end(cut.ends_by, self.ctx.clock())
                    )
        failed = self._cut_off(list(cuts.values())) if cuts else {}
        for device_id, cut in cuts.items():
            if cut.device_pk in failed:
                results[device_id] = DisableResult(
                    device_id,
                    "disabled",
                    "registry token disabled, but the broker login is not: "
                    f"{failed[cut.device_pk].message}; disable it again",
                    access=results[device_id].access,
                )
        return list(results.values())

    def disable_page(
        self, s: Session, devices: Sequence[Device], *, actor: str, reason: str, job: int
    ) -> tuple[list[Cut], int, list[tuple[str, str]]]:
        """A bulk job's batch: the rows of disabling each device, in ``s`` (the caller's
        transaction). Returns what to cut off once it committed, how many were disabled
        already (left as they are) and the devices refused, with why."""
        cuts: list[Cut] = []
        skipped = 0
        refused: list[tuple[str, str]] = []
        for device in lock_devices(s, devices):
            if device.status == DISABLED:
                skipped += 1
            elif device.status == ENROLLING:
                refused.append((device.device_id, "it is enrolling; disable it again"))
            else:
                cuts.append(self._disable_rows(s, device, actor, reason, job=job))
        return cuts, skipped, refused

    def cut_off(self, cuts: Sequence[Cut]) -> dict[int, BrokerError]:
        """After a batch committed (or again, after its server died): publish the wipes and
        disable the broker logins; the logins the broker refused, by device key."""
        return self._cut_off(cuts) if cuts else {}

    def _disable_rows(
        self, s: Session, device: Device, actor: str, reason: str, *, job: int | None = None
    ) -> Cut:
        """The rows of a disable (status, token, wipe command, audit), in ``s``, on the row
        as it is once locked (an enrollment or rotation may have just changed it)."""
        (device,) = lock_devices(s, [device]) or (device,)
        device.status = DISABLED
        ends_by = None
        if device.token_id is not None:
            token = s.get(Token, device.token_id)
            if token is not None:
                ends_by = revoke(s, self.ctx, token)
                token.status, token.updated_at = TOKEN_DISABLED, self.ctx.clock()
                token.disable_at = None
                s.add(token)
            # The device is told to wipe what it holds; the server forgets it too, so an
            # Enable later revives no password copied off the device (only a fresh one).
            s.exec(sql_delete(TokenPassword).where(col(TokenPassword.token_id) == device.token_id))
        wipe = self.envelopes.queue_command(s, device, "wipe")
        device.rotate_due_at = device.warn_due_at = None
        device.retire_slot = device.retire_due_at = None
        seen = device.last_seen_at
        online = seen is not None and self.ctx.clock() - seen < RECENTLY_SEEN
        audit(
            s,
            self.ctx,
            actor,
            "device.disable",
            device.device_id,
            reason=reason,
            **ends_detail(ends_by),
            **({"job": job} if job is not None else {}),
        )
        s.flush()
        assert device.id is not None and wipe.id is not None
        return Cut(device.id, device.mqtt_username, wipe.id if online else None, ends_by)

    def _cut_off(self, cuts: Sequence[Cut]) -> dict[int, BrokerError]:
        """After the rows committed: publish the wipes, give the online devices a moment to
        read theirs, and disable every broker login whatever happened. Returns the logins
        the broker refused, by device."""
        failed: dict[int, BrokerError] = {}
        try:
            self.delivery.publish_pending([c.device_pk for c in cuts])
            waits = [c.wipe_id for c in cuts if c.wipe_id is not None]
            if waits:  # let connected devices read their wipe before the broker kicks them
                self._wait_for_acks(waits, WIPE_WAIT_S)
        finally:
            for cut in cuts:
                try:
                    self._broker().disable_device(cut.username)
                except BrokerError as exc:
                    failed[cut.device_pk] = exc
        return failed

    def _wait_for_acks(self, delivery_ids: Sequence[int], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        waiting = set(delivery_ids)
        while time.monotonic() < deadline:
            with self.ctx.db.session() as s:
                still = s.exec(
                    select(Delivery.id).where(
                        col(Delivery.id).in_(waiting), Delivery.state == DELIVERY_PENDING
                    )
                ).all()
            waiting = {i for i in still if i is not None}
            if not waiting:
                return True
            time.sleep(ACK_POLL_S)
        return False

    def enable(self, device_id: str, *, actor: str) -> DeviceView:
        """Open the broker login and the token again, and deliver a fresh password.

        Exactly once: of two enables at once, the one whose conditional update moves the row
        from disabled to active goes on; the other gets 409 and clears nothing.
        """
        with self.ctx.db.session() as s:
            found = get_device(s, device_id)
            _check_disabled(found)  # before the broker is touched: nothing changes on a 409
            username, pk = found.mqtt_username, found.id
        self._broker().enable_device(username)
        with self.ctx.db.session() as s:
            won = s.exec(
                update(Device)
                .where(col(Device.id) == pk, col(Device.status) == DISABLED)
                .values(status=ACTIVE)
            ).rowcount
            if won:
                self._enable_rows(s, get_device(s, device_id), actor)
        if not won:
            raise self._enable_lost(device_id, username)
        self.delivery.clear_retained(device_id)  # the retained wipe, before new credentials
        self.delivery.publish_pending([pk])  # type: ignore[list-item]
        return self.show(device_id)

    def _enable_rows(self, s: Session, device: Device, actor: str) -> None:
        group = s.get(DeviceGroup, device.group_id)
        pending = s.exec(
            select(Delivery).where(
                Delivery.device_pk == device.id, Delivery.state == DELIVERY_PENDING
            )
        ).all()
        for row in pending:  # the wipe is no longer wanted
            row.state, row.envelope = DELIVERY_SUPERSEDED, None
            s.add(row)
        self._device_token(s, device, group)  # type: ignore[arg-type]
        self.rotation.issue(s, [device])  # the slot it does not use, as it is once locked
        audit(s, self.ctx, actor, "device.enable", device.device_id)

    def _enable_lost(self, device_id: str, username: str) -> ConflictError:
        """Another request enabled the device first (or deleted it). Should it be disabled
        again by now, the login this request opened is closed again; the 409 to raise."""
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            state = device.status
        if state == DISABLED:
            self._broker().disable_device(username)
        return ConflictError(
            f"device {device_id!r} is {state}, not disabled (enabled meanwhile)",
            code="NotDisabled",
        )

    def delete(self, device_id: str, *, actor: str) -> AccessEnd | None:
        """Delete the device, its token and its broker login; when JWTs issued to it before
        stop working."""
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            username = device.mqtt_username
        self._broker().delete_device(device_id, username)
        self.delivery.clear_retained(device_id)
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            token = s.get(Token, device.token_id) if device.token_id else None
            s.exec(sql_delete(Delivery).where(col(Delivery.device_pk) == device.id))
            ends_by = revoke(s, self.ctx, token) if token is not None else None
            s.delete(device)
            s.flush()
            if token is not None:
                s.exec(sql_delete(TokenPassword).where(col(TokenPassword.token_id) == token.id))
                s.delete(token)
            audit(s, self.ctx, actor, "device.delete", device_id, **ends_detail(ends_by))
            return access_end(ends_by, self.ctx.clock())
