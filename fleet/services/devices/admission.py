"""Enrollment and its decisions: enroll, approve or reject a pending device, allow a
device to enroll again."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import delete as sql_delete
from sqlmodel import Session, col

from fleet.credentials import MQTT_PASSWORD_PREFIX, generate_secret
from fleet.db.devices import ACTIVE, PENDING, Delivery, Device, DeviceGroup
from fleet.db.models import Token, TokenPassword
from fleet.domain.errors import ConflictError, ValidationError
from fleet.mqtt.topics import validate_device_id
from fleet.services import enrollment
from fleet.services.context import audit
from fleet.services.devices.base import DeviceParts, device_view, get_device
from fleet.services.views import DeviceView

KEY_BYTES = 32


def _public_key(value: str, kind: type, label: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
        if len(raw) != KEY_BYTES:
            raise ValueError
        kind.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValidationError(
            f"{label} must be the base64 of a {KEY_BYTES}-byte public key", code="InvalidKey"
        ) from None
    return value


class DeviceAdmission(DeviceParts):
    def enroll(
        self, device_id: str, secret: str, x25519_public: str, ed25519_public: str
    ) -> tuple[DeviceView, str]:
        """Enroll a device; returns its view and its MQTT password (shown this once).

        The code and the device are claimed first, committed, so only one of two requests at
        once reaches the broker (see ``enrollment``); a failure after the claim undoes it.
        """
        validate_device_id(device_id)
        _public_key(x25519_public, X25519PublicKey, "x25519PublicKey")
        _public_key(ed25519_public, Ed25519PublicKey, "ed25519PublicKey")
        with self.ctx.db.session() as s:
            now = self.ctx.clock()
            entry = enrollment.find_secret(s, self.ctx.hasher, now, secret)
            claimed = enrollment.claim(s, entry, device_id, (x25519_public, ed25519_public), now)
        mqtt_password = generate_secret(MQTT_PASSWORD_PREFIX)
        try:
            self._broker().provision_device(device_id, device_id, mqtt_password)
            with self.ctx.db.session() as s:
                device = enrollment.take(s, claimed)
                view = self._finish_enroll(s, device, claimed, x25519_public, ed25519_public)
        except BaseException:
            with self.ctx.db.session() as s:
                enrollment.undo(s, claimed)
            raise
        self.delivery.publish_pending([claimed.device_pk])
        return view, mqtt_password

    def _finish_enroll(
        self, s: Session, device: Device, claimed: enrollment.Claim, x25519: str, ed25519: str
    ) -> DeviceView:
        group = s.get(DeviceGroup, claimed.group_id)
        assert group is not None
        device.group_id = claimed.group_id
        device.x25519_public, device.ed25519_public = x25519, ed25519
        device.status = PENDING if group.require_approval else ACTIVE
        device.approved_at = None if group.require_approval else claimed.at
        device.acked_credentials_version, device.active_slot = device.last_version, None
        s.add(device)
        s.flush()
        self._device_token(s, device, group)
        if device.status == ACTIVE:
            self._issue(s, device, "password1")
        audit(
            s,
            self.ctx,
            f"device:{device.device_id}",
            "device.enroll",
            device.device_id,
            group=group.name,
            status=device.status,
            via=claimed.via,
        )
        return device_view(s, device, self.ctx.clock())

    def approve(self, device_id: str, *, actor: str) -> DeviceView:
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            if device.status != PENDING:
                raise ConflictError(
                    f"device {device_id!r} is {device.status}, not pending", code="NotPending"
                )
            group = s.get(DeviceGroup, device.group_id)
            device.status, device.approved_at = ACTIVE, self.ctx.clock()
            self._device_token(s, device, group)  # type: ignore[arg-type]
            self._issue(s, device, "password1")
            audit(s, self.ctx, actor, "device.approve", device_id)
            pk = device.id
        self.delivery.publish_pending([pk])  # type: ignore[list-item]
        return self.show(device_id)

    def reject(self, device_id: str, *, actor: str) -> None:
        """Refuse a pending device: its record, token and broker login are removed.

        It never had credentials. The rows go first, in one transaction that deletes the
        device only while it is still pending (an approval that won the race keeps it); the
        broker login goes after. The device may enroll again only with a valid secret or code,
        and then waits for approval again.
        """
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            if device.status != PENDING:
                raise ConflictError(
                    f"device {device_id!r} is {device.status}, not pending", code="NotPending"
                )
            pk, token_id, username = device.id, device.token_id, device.mqtt_username
            s.exec(sql_delete(Delivery).where(col(Delivery.device_pk) == pk))
            gone = s.exec(
                sql_delete(Device).where(col(Device.id) == pk, col(Device.status) == PENDING)
            )
            if gone.rowcount != 1:
                raise ConflictError(f"device {device_id!r} is no longer pending", code="NotPending")
            if token_id is not None:
                s.exec(sql_delete(TokenPassword).where(col(TokenPassword.token_id) == token_id))
                s.exec(sql_delete(Token).where(col(Token.id) == token_id))
            audit(s, self.ctx, actor, "device.reject", device_id)
        self._broker().delete_device(device_id, username)
        self.delivery.clear_retained(device_id)

    def allow_reenroll(self, device_id: str, *, actor: str) -> DeviceView:
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            device.allow_reenroll = True
            s.add(device)
            audit(s, self.ctx, actor, "device.allow-reenroll", device_id)
        return self.show(device_id)
