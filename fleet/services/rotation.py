"""Issuing device passwords, one device or a whole batch in a handful of queries.

Every issue writes a new password into a slot, seals it to the device, queues the delivery and
sets when the scheduler should rotate again (the new expiry less the group's rotation window),
all in the caller's transaction: a crash either keeps all of it or none of it.

Two issues for one device at once (an operator's rotate, the scheduler's pass, a reissue after
a reject) take turns: :func:`lock_devices` holds the devices' rows first and reads them again,
so the second sees the first's password, version and delivery and supersedes them instead of
writing a version twice (a 500) or a slot whose delivered password no longer matches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from fleet.credentials import PASSWORD_PREFIX, generate_secret
from fleet.db.devices import ACTIVE, Device, DeviceGroup
from fleet.db.models import Token, TokenPassword
from fleet.metrics import metrics
from fleet.services.context import ServiceContext
from fleet.services.envelopes import EnvelopeQueue


def other_slot(device: Device) -> str:
    """The slot the device does not use now (password1 for a device that has none yet)."""
    return "password2" if device.active_slot == "password1" else "password1"


def lock_devices(s: Session, devices: Sequence[Device]) -> list[Device]:
    """Hold these devices' rows for the rest of ``s`` and read them again (same objects).

    A write: on SQLite it opens the write transaction unless ``s`` already has (waiting for
    any writer before it), on PostgreSQL it locks the rows. The changes already made in ``s``
    are flushed first, so reading again loses none of them.
    """
    pks = sorted({d.id for d in devices if d.id is not None})
    if not pks:
        return []
    s.flush()
    s.exec(
        update(Device)
        .where(col(Device.id).in_(pks))
        .values(last_version=Device.last_version)  # changes nothing: it takes the lock
        # Nothing to bring in line in the session (the rows are read again just below): no
        # walk over every device it holds, which made a batch quadratic.
        .execution_options(synchronize_session=False)
    )
    fresh = s.exec(
        select(Device).where(col(Device.id).in_(pks)).execution_options(populate_existing=True)
    ).all()
    by_pk = {d.id: d for d in fresh}
    return [by_pk[d.id] for d in devices if d.id in by_pk]


class RotationService:
    def __init__(self, ctx: ServiceContext, envelopes: EnvelopeQueue) -> None:
        self.ctx = ctx
        self.envelopes = envelopes

    def reissue(self, s: Session, device: Device) -> None:
        """A fresh password in the slot the device does not use (the delivery service's
        :class:`~fleet.services.delivery.Reissuer`)."""
        self.issue(s, [device])

    def issue(
        self, s: Session, devices: Sequence[Device], slot_of: Callable[[Device], str] = other_slot
    ) -> int:
        """A fresh password for each device in ``slot_of(device)``, sealed and queued.

        Only active devices get one: nothing is issued to a pending or disabled device (as
        each is once its row is locked: another request may have changed it meanwhile)."""
        devices = lock_devices(s, devices)
        devices = [d for d in devices if d.token_id is not None and d.status == ACTIVE]
        if not devices:
            return 0
        now = self.ctx.clock()
        group_ids = {d.group_id for d in devices}
        groups = {
            g.id: g
            for g in s.exec(select(DeviceGroup).where(col(DeviceGroup.id).in_(group_ids))).all()
        }
        token_ids = [d.token_id for d in devices]
        tokens = {t.id: t for t in s.exec(select(Token).where(col(Token.id).in_(token_ids)))}
        stored = {
            (p.token_id, p.slot): p
            for p in s.exec(
                select(TokenPassword).where(col(TokenPassword.token_id).in_(token_ids))
            ).all()
        }
        self.envelopes.supersede_pending_credentials(s, [d.id for d in devices])  # type: ignore[misc]
        login_server = self.ctx.settings.registry_login_server
        for device in devices:
            group = groups[device.group_id]
            token = tokens[device.token_id]
            slot = slot_of(device)
            expiry = now + timedelta(days=group.password_lifetime_days)
            value = generate_secret(PASSWORD_PREFIX)
            row = stored.get((token.id, slot)) or TokenPassword(
                token_id=token.id, slot=slot, secret_hash=""
            )  # type: ignore[arg-type]
            row.secret_hash = self.ctx.hasher.hash(value)
            row.created_at, row.expiry = now, expiry
            s.add(row)
            device.rotate_due_at = expiry - timedelta(days=group.rotation_window_days)
            if device.retire_slot == slot:  # never retire the slot just refilled
                device.retire_slot = device.retire_due_at = None
            self.envelopes.queue_credentials(
                s,
                device,
                login_server=login_server,
                username=token.name,
                password=value,
                slot=slot,
                expiry=expiry,
            )
        metrics().passwords_issued.inc(len(devices))
        return len(devices)
