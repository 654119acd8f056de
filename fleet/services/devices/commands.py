"""What is sent to an active device on an operator's word: a new password (rotate), its
pending deliveries again (redeliver), a pull command."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, select

from fleet.db.devices import ACTIVE, DELIVERY_PENDING, Delivery, Device
from fleet.domain.errors import ConflictError, ValidationError
from fleet.services.context import audit
from fleet.services.devices.base import DeviceParts, get_device
from fleet.services.rotation import lock_devices
from fleet.services.views import DeviceView

MAX_PULL_IMAGES = 50


class DeviceCommands(DeviceParts):
    def rotate(self, device_id: str, *, actor: str) -> DeviceView:
        """A new password in the slot the device does not use, delivered; the old one stays
        valid until the device acknowledges the new one (and its own expiry)."""
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            if device.status != ACTIVE:
                raise ConflictError(
                    f"device {device_id!r} is {device.status}, not active", code="NotActive"
                )
            if not self.rotation.issue(s, [device]):  # disabled meanwhile
                raise ConflictError(f"device {device_id!r} is no longer active", code="NotActive")
            audit(s, self.ctx, actor, "device.rotate", device_id)
            pk = device.id
        self.delivery.publish_pending([pk])  # type: ignore[list-item]
        return self.show(device_id)

    def rotate_page(
        self, s: Session, devices: Sequence[Device], *, actor: str, job: int
    ) -> tuple[list[int], int]:
        """A bulk job's batch: a new password for each device still active once its row is
        locked, in ``s`` (the caller's transaction; publish after it commits). Returns the
        keys of the devices rotated and how many were skipped (no longer active)."""
        locked = lock_devices(s, devices)
        active = [d for d in locked if d.status == ACTIVE and d.token_id is not None]
        self.rotation.issue(s, active)
        for device in active:
            audit(s, self.ctx, actor, "device.rotate", device.device_id, job=job)
        return [d.id for d in active if d.id is not None], len(locked) - len(active)

    def pull(self, device_id: str, images: list[str] | None = None, *, actor: str) -> DeviceView:
        """Tell the device to pull now: these images, or (none given) its configured ones."""
        images = list(images or [])
        if len(images) > MAX_PULL_IMAGES or any(not 0 < len(i) <= 512 for i in images):
            raise ValidationError(
                f"give at most {MAX_PULL_IMAGES} image references of 1 to 512 characters"
            )
        with self.ctx.db.session() as s:
            # locked first: its envelope version follows any rotation's under way
            (device,) = lock_devices(s, [get_device(s, device_id)])
            if device.status != ACTIVE:
                raise ConflictError(
                    f"device {device_id!r} is {device.status}, not active", code="NotActive"
                )
            self.envelopes.queue_command(s, device, "pull", images=images)
            audit(s, self.ctx, actor, "device.pull", device_id, images=images)
            pk = device.id
        self.delivery.publish_pending([pk])  # type: ignore[list-item]
        return self.show(device_id)

    def redeliver(self, device_id: str, *, actor: str) -> DeviceView:
        """Publish again what the device has not acknowledged; with nothing pending, rotate
        (the server never keeps a password it could send twice)."""
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            pending = s.exec(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.device_pk == device.id, Delivery.state == DELIVERY_PENDING)
            ).one()
            pk = device.id
        if not pending:
            return self.rotate(device_id, actor=actor)
        self.delivery.publish_pending([pk])  # type: ignore[list-item]
        return self.show(device_id)
