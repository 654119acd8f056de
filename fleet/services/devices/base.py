"""What every part of the device service shares: its collaborators, a device's row and
view, its token, and a new password for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from fleet.db.devices import ACTIVE, DELIVERY_PENDING, Delivery, Device, DeviceGroup
from fleet.db.models import DISABLED as TOKEN_DISABLED
from fleet.db.models import ENABLED as TOKEN_ENABLED
from fleet.db.models import Token
from fleet.domain.errors import ConflictError, NotFoundError
from fleet.domain.names import device_token_name
from fleet.services.broker import BrokerProvider
from fleet.services.context import ServiceContext
from fleet.services.delivery import DeliveryService
from fleet.services.device_list import DeviceLister
from fleet.services.envelopes import EnvelopeQueue
from fleet.services.paging import Cursors
from fleet.services.revocation import AccessEnd, access_end
from fleet.services.rotation import RotationService
from fleet.services.tokens import TokenService
from fleet.services.views import DeviceView

APPROVAL_QUEUE_PAGE = 100


def get_device(s: Session, device_id: str) -> Device:
    row = s.exec(select(Device).where(Device.device_id == device_id)).first()
    if row is None:
        raise NotFoundError(f"device {device_id!r} does not exist", code="DeviceNotFound")
    return row


def device_view(s: Session, d: Device, now: datetime) -> DeviceView:
    group = s.get(DeviceGroup, d.group_id)
    token = s.get(Token, d.token_id) if d.token_id else None
    assert d.id is not None
    pending = pending_counts(s, [d.id]).get(d.id, 0)
    return make_view(
        d,
        group.name if group else "",
        token.name if token else None,
        pending,
        access_end(token.access_ends_at, now) if token is not None else None,
    )


def pending_counts(s: Session, device_pks: Sequence[int]) -> dict[int, int]:
    """Deliveries not yet acknowledged, per device, in one query."""
    if not device_pks:
        return {}
    rows = s.exec(
        select(Delivery.device_pk, func.count())
        .where(col(Delivery.device_pk).in_(device_pks), Delivery.state == DELIVERY_PENDING)
        .group_by(col(Delivery.device_pk))
    ).all()
    return {pk: n for pk, n in rows}


# The view's fields that are the row's own columns, by the same names: the rest are joined.
_ROW_FIELDS = tuple(
    f.name
    for f in fields(DeviceView)
    if f.name not in {"group", "token", "pending_deliveries", "access"}
)


def make_view(
    d: Device, group: str, token: str | None, pending: int, access: AccessEnd | None = None
) -> DeviceView:
    return DeviceView(
        **{name: getattr(d, name) for name in _ROW_FIELDS},
        group=group,
        token=token,
        pending_deliveries=pending,
        access=access,
    )


class DeviceParts:
    """The collaborators and row helpers the parts of ``DeviceService`` are written against."""

    def __init__(
        self,
        ctx: ServiceContext,
        tokens: TokenService,
        delivery: DeliveryService,
        rotation: RotationService,
        envelopes: EnvelopeQueue,
        broker: BrokerProvider,
    ) -> None:
        self.ctx = ctx
        self.cursors = Cursors(ctx.hasher)
        self.lister = DeviceLister(self.cursors)
        self.tokens = tokens
        self.delivery = delivery
        self.rotation = rotation
        self.envelopes = envelopes
        self._broker = broker

    def show(self, device_id: str) -> DeviceView:
        with self.ctx.db.session() as s:
            return device_view(s, get_device(s, device_id), self.ctx.clock())

    def touch(self, device_id: str, when: datetime) -> None:
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            device.last_seen_at = when
            s.add(device)

    def _device_token(self, s: Session, device: Device, group: DeviceGroup) -> Token:
        name = device_token_name(device.device_id)
        token = s.exec(select(Token).where(Token.name == name)).first()
        if token is None:
            now = self.ctx.clock()
            token = Token(
                name=name, scope_map_id=group.scope_map_id, created_at=now, updated_at=now
            )
            s.add(token)
            s.flush()
        elif token.id != device.token_id:
            raise ConflictError(
                f"a token named {name!r} exists and is not this device's", code="TokenExists"
            )
        token.status = TOKEN_ENABLED if device.status == ACTIVE else TOKEN_DISABLED
        if token.status == TOKEN_ENABLED:
            token.access_ends_at = None  # its access is back
        token.scope_map_id = group.scope_map_id
        s.add(token)
        device.token_id = token.id
        s.add(device)
        return token

    def _issue(self, s: Session, device: Device, slot: str) -> int:
        """A new password in ``slot`` with the group's lifetime, sealed to the device; 0 when
        it is no longer active (``issue`` locks the row and reads it again first)."""
        return self.rotation.issue(s, [device], lambda _: slot)
