"""Devices: enrollment, approval, disable and enable, delete, rotation and redelivery.

Broker calls (logins, publishing) happen outside database transactions: logins are created or
repaired idempotently before the rows that need them, and envelopes are published after the
transaction that queued them has committed. Where two requests could race to the broker, a
conditional write decides first which one goes (enrollment claims, see ``enrollment``; enable
moves the row from disabled to active), and issuing locks the device rows it writes.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from fleet.credentials import MQTT_PASSWORD_PREFIX, generate_secret
from fleet.db.devices import (
    ACTIVE,
    DELIVERY_PENDING,
    DELIVERY_SUPERSEDED,
    DISABLED,
    ENROLLING,
    PENDING,
    Delivery,
    Device,
    DeviceGroup,
)
from fleet.db.models import DISABLED as TOKEN_DISABLED
from fleet.db.models import ENABLED as TOKEN_ENABLED
from fleet.db.models import ScopeMap, Token, TokenPassword
from fleet.domain.errors import ConflictError, NotFoundError, ValidationError
from fleet.domain.names import device_token_name, validate_device_id
from fleet.mqtt.errors import BrokerError
from fleet.services import enrollment
from fleet.services.broker import BrokerProvider
from fleet.services.context import ServiceContext, audit
from fleet.services.delivery import DeliveryService
from fleet.services.device_list import DeviceLister, DeviceQuery
from fleet.services.envelopes import EnvelopeQueue
from fleet.services.paging import DEFAULT_LIMIT, Cursors, Page, check_limit
from fleet.services.revocation import AccessEnd, access_end, ends_detail, revoke
from fleet.services.rotation import RotationService, lock_devices
from fleet.services.tokens import TokenService
from fleet.services.views import ApprovalQueue, DeviceView, DisableResult, PendingDeviceView

KEY_BYTES = 32
# Before its broker login is disabled, a device seen this recently gets this long to
# acknowledge its wipe command (its registry token is cut at once regardless).
RECENTLY_SEEN = timedelta(minutes=10)
WIPE_WAIT_S = 3.0
ACK_POLL_S = 0.1
MAX_PULL_IMAGES = 50
APPROVAL_QUEUE_PAGE = 100
MAX_BULK = 100  # devices disabled by one bulk request: a page of the list


@dataclass(frozen=True, slots=True)
class _Cut:
    """A device whose disable committed: what is left to do outside the transaction."""

    device_pk: int
    username: str
    wipe_id: int | None  # wait for this delivery's acknowledgement (the device is online)
    ends_by: datetime | None = None  # when the registry refuses the last JWT issued to it


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


def get_device(s: Session, device_id: str) -> Device:
    row = s.exec(select(Device).where(Device.device_id == device_id)).first()
    if row is None:
        raise NotFoundError(f"device {device_id!r} does not exist", code="DeviceNotFound")
    return row


def _view(s: Session, d: Device, now: datetime) -> DeviceView:
    group = s.get(DeviceGroup, d.group_id)
    token = s.get(Token, d.token_id) if d.token_id else None
    assert d.id is not None
    pending = pending_counts(s, [d.id]).get(d.id, 0)
    return _make_view(
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


def _make_view(
    d: Device, group: str, token: str | None, pending: int, access: AccessEnd | None = None
) -> DeviceView:
    return DeviceView(
        device_id=d.device_id,
        group=group,
        status=d.status,
        token=token,
        mqtt_username=d.mqtt_username,
        enrolled_at=d.enrolled_at,
        approved_at=d.approved_at,
        last_seen_at=d.last_seen_at,
        last_version=d.last_version,
        acked_credentials_version=d.acked_credentials_version,
        active_slot=d.active_slot,
        pending_deliveries=pending,
        last_pull_at=d.last_pull_at,
        last_pull_ok=d.last_pull_ok,
        last_pull_detail=d.last_pull_detail,
        active_expiry=d.active_expiry,
        allow_reenroll=d.allow_reenroll,
        access=access,
    )


def _check_disabled(device: Device) -> None:
    if device.status != DISABLED:
        raise ConflictError(
            f"device {device.device_id!r} is {device.status}, not disabled", code="NotDisabled"
        )


class DeviceService:
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

    # -- enrollment ----------------------------------------------------------------------
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
        return _view(s, device, self.ctx.clock())

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

    # -- reads -----------------------------------------------------------------------------
    def show(self, device_id: str) -> DeviceView:
        with self.ctx.db.session() as s:
            return _view(s, get_device(s, device_id), self.ctx.clock())

    def list(
        self,
        query: DeviceQuery | None = None,
        *,
        group: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[DeviceView]:
        """One page of devices: ``query`` (or just ``group`` and ``status``) says which and
        in which order (see ``device_list``). At most five statements a page, each on an
        index; an unknown group has no devices."""
        check_limit(limit)
        if query is None:
            query = DeviceQuery(group=group, status=status)
        with self.ctx.db.session() as s:
            rows, next_cursor = self.lister.rows(
                s,
                query,
                limit=limit,
                cursor=cursor,
                now=self.ctx.clock(),
                expiry_days=self.ctx.settings.expiry_warning_days,
            )
            pending = pending_counts(s, [d.id for d, *_ in rows if d.id is not None])
            now = self.ctx.clock()
            views = [
                _make_view(d, g, t, pending.get(d.id, 0), access_end(ends, now))
                for d, g, t, ends in rows
            ]
            return Page(tuple(views), next_cursor)

    def approval_queue(self, group: str, *, limit: int = APPROVAL_QUEUE_PAGE) -> ApprovalQueue:
        """A group's first pending devices by id, and how many are pending: two queries."""
        with self.ctx.db.session() as s:
            group_id = s.exec(select(DeviceGroup.id).where(DeviceGroup.name == group)).first()
            if group_id is None:
                raise NotFoundError(f"device group {group!r} does not exist", code="GroupNotFound")
            pending = (Device.group_id == group_id, Device.status == PENDING)
            rows = s.exec(
                select(Device.device_id, Device.enrolled_at)
                .where(*pending)
                .order_by(col(Device.device_id))
                .limit(limit)
            ).all()
            total = s.exec(select(func.count()).select_from(Device).where(*pending)).one()
            return ApprovalQueue(tuple(PendingDeviceView(d, at) for d, at in rows), total)

    def scope_map_of(self, device_id: str) -> str | None:
        with self.ctx.db.session() as s:
            group = s.get(DeviceGroup, get_device(s, device_id).group_id)
            mapped = s.get(ScopeMap, group.scope_map_id) if group and group.scope_map_id else None
            return mapped.name if mapped else None

    # -- operator actions ------------------------------------------------------------------
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
        cuts: dict[str, _Cut] = {}
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

    def _disable_rows(self, s: Session, device: Device, actor: str, reason: str) -> _Cut:
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
        )
        s.flush()
        assert device.id is not None and wipe.id is not None
        return _Cut(device.id, device.mqtt_username, wipe.id if online else None, ends_by)

    def _cut_off(self, cuts: Sequence[_Cut]) -> dict[int, BrokerError]:
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

    def allow_reenroll(self, device_id: str, *, actor: str) -> DeviceView:
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            device.allow_reenroll = True
            s.add(device)
            audit(s, self.ctx, actor, "device.allow-reenroll", device_id)
        return self.show(device_id)

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

    def touch(self, device_id: str, when: datetime) -> None:
        with self.ctx.db.session() as s:
            device = get_device(s, device_id)
            device.last_seen_at = when
            s.add(device)
