"""Publishing the outbox of sealed envelopes, and what devices say back on their status topics.

The database is the record of what each device holds: a delivery stays pending until the
device acknowledges it, is published again when the device says hello with an older version,
and is retried with backoff by the reconciler. Envelopes are sealed and queued by
:mod:`.envelopes` in the caller's transaction; publishing happens after it has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from device_agent.protocol import (
    Ack,
    Hello,
    InvalidStatus,
    Kind,
    Reject,
    StatusNotJson,
    StatusTooLarge,
    parse_status,
)
from device_agent.protocol.messages import StatusMessage
from fleet.db.devices import ACTIVE, DELIVERY_ACKED, DELIVERY_PENDING, Delivery, Device
from fleet.db.models import AuditEvent, TokenPassword
from fleet.metrics import metrics
from fleet.mqtt import topics
from fleet.mqtt.errors import BrokerError
from fleet.services.broker import BrokerProvider, Publication
from fleet.services.context import ServiceContext, audit

log = logging.getLogger(__name__)
ACKNOWLEDGED_KEY = "fleet.deliveries_acknowledged"  # Session.info: acks of this transaction

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
PUBLISH_BATCH = 500
# Refusals that no redelivery can cure: the password failed at the token endpoint, or the
# payload could not be read. Anything else (a replay, a stale version) is noise.
REORDER_WINDOW = timedelta(minutes=2)
FINAL_REJECTIONS = frozenset({"CredentialsRefused", "InvalidPayload"})
REISSUE_LIMITED = "device.reissue.limited"
STATUS_THROTTLED = "device.status.throttled"


# The doubling stops here: past it the cap holds anyway, and 2**attempts would overflow timedelta.
MAX_RETRY_DOUBLINGS = (RETRY_CAP // RETRY_BASE).bit_length()


def retry_delay(attempts: int) -> timedelta:
    doublings = min(max(0, attempts - 1), MAX_RETRY_DOUBLINGS)
    return min(RETRY_CAP, RETRY_BASE * 2**doublings)


class Reissuer(Protocol):
    """Queues a fresh password for a device in the caller's transaction (the rotation
    service): what a device that lost its credentials, or refused its newest, is given."""

    def reissue(self, s: Session, device: Device) -> None: ...


class DeliveryService:
    def __init__(
        self,
        ctx: ServiceContext,
        broker: BrokerProvider,
        reissuer: Reissuer,
    ) -> None:
        self.ctx = ctx
        self._broker = broker
        self.reissuer = reissuer

    # -- publishing ----------------------------------------------------------------------
    def publish_pending(
        self, device_pks: Iterable[int] | None = None, *, due_only: bool = False
    ) -> int:
        """Publish pending deliveries (of these devices, or every due one); returns how many
        the broker acknowledged. A failure leaves them pending, to be retried with backoff."""
        now = self.ctx.clock()
        query = select(Delivery).where(Delivery.state == DELIVERY_PENDING)
        if device_pks is not None:
            query = query.where(col(Delivery.device_pk).in_(list(device_pks)))
        if due_only:
            query = query.where(col(Delivery.next_attempt_at) <= now)
        with self.ctx.db.session() as s:
            rows = s.exec(query.order_by(col(Delivery.id)).limit(PUBLISH_BATCH)).all()
            if not rows:
                return 0
            batch = [Publication(r.topic, r.envelope or b"") for r in rows]
            try:
                self._broker().publish(batch)
                ok = True
            except BrokerError as exc:
                log.warning("publishing %d deliveries failed: %s", len(rows), exc.message)
                ok = False
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + retry_delay(row.attempts)
                if ok:
                    row.published_at = now
                s.add(row)
            return len(rows) if ok else 0

    def pending_count(self) -> int:
        """Deliveries not yet acknowledged, in one indexed count (the metrics' gauge)."""
        with self.ctx.db.session() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.state == DELIVERY_PENDING)
                ).one()
            )

    def republish_all_pending(self) -> int:
        """After the broker came back: everything unacknowledged is due now (it may have lost
        its retained messages, and hellos sent while we were away)."""
        with self.ctx.db.session() as s:
            s.exec(
                update(Delivery)
                .where(col(Delivery.state) == DELIVERY_PENDING)
                .values(next_attempt_at=self.ctx.clock())
            )
        return self.publish_due()

    def publish_due(self) -> int:
        """Every due delivery, batch after batch, until one comes back short (nothing more
        is due, or the broker failed and the rest waits for its backoff)."""
        total = 0
        while True:
            done = self.publish_pending(due_only=True)
            total += done
            if done < PUBLISH_BATCH:
                return total

    def clear_retained(self, device_id: str) -> None:
        """Empty retained messages on a device's topics (an empty retained message deletes)."""
        self._broker().publish(
            [
                Publication(topics.credentials_topic(device_id), b""),
                Publication(topics.commands_topic(device_id), b""),
            ]
        )

    # -- what devices say ------------------------------------------------------------------
    def handle_status(self, device_id: str, raw: bytes) -> None:
        """One message from ``fleet/v1/devices/{id}/status``; bad ones are dropped, logged.
        The one parser of both sides reads it (``device_agent.protocol.messages``)."""
        self._republish(self._handle_parsed(self._parsed([(device_id, raw)])))

    def handle_statuses(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Several status messages (of one or many devices), in the order they came, in one
        transaction: one commit, one write of every sender's ``last_seen_at`` and one read of
        their rows and of the deliveries they acknowledge, instead of all that per message.
        What each message does is exactly what :meth:`handle_status` does with it, one after
        another. When the batch fails as a whole (a deadlock, one message's error), nothing of
        it is kept and each message is handled again alone, so one bad message costs only
        itself (its error is logged)."""
        parsed = self._parsed(messages)
        republish: list[int] = []
        try:
            republish = self._handle_parsed(parsed)
        except Exception:
            if len(parsed) <= 1:
                raise
            log.warning("a batch of %d status messages failed; handling each alone", len(parsed))
            for one in parsed:
                try:
                    republish += self._handle_parsed([one])
                except Exception:
                    log.exception("handling a status message from %s failed", one[0])
        # After the commit, and outside the retry: what was committed is never handled twice.
        self._republish(republish)

    def _republish(self, device_pks: list[int]) -> None:
        if device_pks:
            self.publish_pending(dict.fromkeys(device_pks))

    @staticmethod
    def _parsed(messages: Iterable[tuple[str, bytes]]) -> list[tuple[str, StatusMessage]]:
        parsed: list[tuple[str, StatusMessage]] = []
        for device_id, raw in messages:
            try:
                parsed.append((device_id, parse_status(raw)))
            except StatusTooLarge:
                log.warning("dropped an oversized status message from %s", device_id)
            except StatusNotJson:
                log.warning("dropped a status message from %s that is not JSON", device_id)
            except InvalidStatus as error:
                log.debug("dropped a status message from %s: %s", device_id, error)
        return parsed

    def _handle_parsed(self, parsed: Sequence[tuple[str, StatusMessage]]) -> list[int]:
        """Handle them in one transaction; returns the devices with something to publish."""
        if not parsed:
            return []
        republish: list[int] = []
        ids = sorted({device_id for device_id, _ in parsed})
        with self.ctx.db.session() as s:
            # Written first, then read: the write locks the devices' rows (PostgreSQL, in the
            # order of the device-id index: two batches sharing devices wait for each other
            # instead of deadlocking) or the database (SQLite) for the transaction, so servers
            # sharing the status stream handle one device's messages one at a time and the
            # reissue bound holds.
            s.exec(
                update(Device)
                .where(col(Device.device_id).in_(ids))
                .values(last_seen_at=self.ctx.clock())
            )
            devices = {
                d.device_id: d
                for d in s.exec(select(Device).where(col(Device.device_id).in_(ids))).all()
            }
            acked = self._acked_deliveries(s, devices, parsed)
            passwords = self._passwords(s, acked.values(), devices.values())
            for device_id, message in parsed:
                device = devices.get(device_id)
                if device is None:
                    continue
                if isinstance(message, Hello):
                    if self._hello(s, device, message.versions):
                        republish.append(device.id)  # type: ignore[arg-type]
                elif isinstance(message, Ack):
                    self._ack(s, device, message, acked, passwords)
                elif isinstance(message, Reject):
                    if self._reject(s, device, message):
                        republish.append(device.id)  # type: ignore[arg-type]
                else:  # a pull's result
                    device.last_pull_at = self.ctx.clock()
                    device.last_pull_ok = message.ok
                    detail = message.image if message.ok else message.error
                    device.last_pull_detail = detail[:500] if detail else None
        # Counted once committed: a batch that failed and is handled again message by message
        # would otherwise count its acknowledgements twice.
        if acknowledged := s.info.get(ACKNOWLEDGED_KEY, 0):
            metrics().deliveries_acknowledged.inc(acknowledged)
        return republish

    @staticmethod
    def _acked_deliveries(
        s: Session, devices: Mapping[str, Device], parsed: Sequence[tuple[str, StatusMessage]]
    ) -> dict[tuple[int, int], Delivery]:
        """The deliveries the batch's acks name, read in one query, by (device, version)."""
        wanted = {
            (devices[d].id, m.version) for d, m in parsed if isinstance(m, Ack) and d in devices
        }
        if not wanted:
            return {}
        rows = s.exec(
            select(Delivery).where(
                col(Delivery.device_pk).in_({pk for pk, _ in wanted}),
                col(Delivery.version).in_({v for _, v in wanted}),
            )
        ).all()
        return {(r.device_pk, r.version): r for r in rows}

    @staticmethod
    def _passwords(
        s: Session, deliveries: Iterable[Delivery], devices: Iterable[Device]
    ) -> dict[tuple[int, str], TokenPassword]:
        """The passwords of the devices whose deliveries the batch acknowledges, by (token,
        slot): read once here instead of once per ack (each read also flushed the writes so
        far, so every ack cost three writes instead of grouped ones at the commit)."""
        acking = {d.device_pk for d in deliveries}
        token_ids = {d.token_id for d in devices if d.id in acking and d.token_id is not None}
        if not token_ids:
            return {}
        rows = s.exec(select(TokenPassword).where(col(TokenPassword.token_id).in_(token_ids))).all()
        return {(r.token_id, r.slot): r for r in rows}

    def _hello(self, s: Session, device: Device, held: Mapping[str, int]) -> bool:
        """Acknowledge what the device holds; True when something newer is pending.

        A device holding less than it once acknowledged has lost its credentials (a corrupt
        store, a reinstall): the server keeps no password it could send again, so it issues
        a new one.
        """
        pending = s.exec(
            select(Delivery).where(
                Delivery.device_pk == device.id, Delivery.state == DELIVERY_PENDING
            )
        ).all()
        newer = False
        for row in pending:
            have = held.get(row.kind)
            if have is not None and have >= row.version:
                self._mark_acked(s, device, row)
            else:
                newer = True
        have = held.get(Kind.CREDENTIALS.value)
        lost = have is not None and have < device.acked_credentials_version
        if (
            lost
            and not any(r.kind == Kind.CREDENTIALS.value for r in pending)
            and not self._acked_lately(s, device)
        ):
            log.warning("device %s lost its credentials; issuing new ones", device.device_id)
            if self._reissue(s, device):
                newer = True
        return newer

    def _acked_lately(self, s: Session, device: Device) -> bool:
        """Several servers (or workers) share the status stream, so a hello sent before an
        ack may be handled after it: within this window a low hello is taken for that."""
        acked_at = s.exec(
            select(Delivery.acked_at).where(
                Delivery.device_pk == device.id,
                Delivery.version == device.acked_credentials_version,
            )
        ).first()
        return acked_at is not None and self.ctx.clock() - acked_at < REORDER_WINDOW

    @staticmethod
    def _refused_newest(device: Device, message: Reject) -> bool:
        """The device refused the newest password it was sent: that one will never do."""
        return (
            message.kind == Kind.CREDENTIALS.value
            and message.reason in FINAL_REJECTIONS
            and message.version == device.last_version
        )

    def _reject(self, s: Session, device: Device, message: Reject) -> bool:
        """A refusal; True when it got the device a new password (to be published)."""
        acted = device.status == ACTIVE and self._refused_newest(device, message)
        if acted and not self._reissue(s, device):
            return False  # over the bound: recorded once per window by _reissue
        audit(
            s,
            self.ctx,
            f"device:{device.device_id}",
            "device.envelope.reject",
            device.device_id,
            version=message.version,
            reason=message.reason[:100],
        )
        return acted

    def _reissue(self, s: Session, device: Device) -> bool:
        """A new password for the device, unless it had ``reissue_limit`` of them (credential
        deliveries, counted in the database so that every worker and restart shares the
        count) within the window: then the refusal is recorded, once per window, and not
        acted on until the window has passed. True when a password was queued."""
        settings = self.ctx.settings
        since = self.ctx.clock() - timedelta(seconds=settings.reissue_window_seconds)
        minted = s.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.device_pk == device.id,
                Delivery.kind == Kind.CREDENTIALS.value,
                col(Delivery.created_at) >= since,
            )
        ).one()
        if minted < settings.reissue_limit:
            self.reissuer.reissue(s, device)
            return True
        recorded = s.exec(
            select(AuditEvent.id).where(
                AuditEvent.target == device.device_id,
                AuditEvent.action == REISSUE_LIMITED,
                col(AuditEvent.at) >= since,
            )
        ).first()
        if recorded is None:
            log.warning(
                "device %s had %d passwords within %d s: not issuing another until later",
                device.device_id,
                minted,
                settings.reissue_window_seconds,
            )
            audit(
                s,
                self.ctx,
                f"device:{device.device_id}",
                REISSUE_LIMITED,
                device.device_id,
                issued=minted,
                limit=settings.reissue_limit,
                windowSeconds=settings.reissue_window_seconds,
            )
        return False

    def record_throttled(self, counts: dict[str, int], window_s: float) -> None:
        """One audit event per device whose status messages were dropped over its rate."""
        with self.ctx.db.session() as s:
            for device_id, dropped in counts.items():
                audit(
                    s,
                    self.ctx,
                    f"device:{device_id}",
                    STATUS_THROTTLED,
                    device_id,
                    dropped=dropped,
                    windowSeconds=round(window_s),
                )

    def _ack(
        self,
        s: Session,
        device: Device,
        message: Ack,
        known: Mapping[tuple[int, int], Delivery] | None = None,
        passwords: Mapping[tuple[int, str], TokenPassword] | None = None,
    ) -> None:
        version = message.version
        row = (known or {}).get((device.id, version))  # type: ignore[arg-type]
        if row is None:
            row = s.exec(
                select(Delivery).where(Delivery.device_pk == device.id, Delivery.version == version)
            ).first()
        if row is not None and row.state != DELIVERY_ACKED:
            self._mark_acked(s, device, row, passwords)

    def _mark_acked(
        self,
        s: Session,
        device: Device,
        row: Delivery,
        passwords: Mapping[tuple[int, str], TokenPassword] | None = None,
    ) -> None:
        now = self.ctx.clock()
        row.state, row.envelope, row.acked_at = DELIVERY_ACKED, None, now
        s.add(row)
        s.info[ACKNOWLEDGED_KEY] = s.info.get(ACKNOWLEDGED_KEY, 0) + 1  # counted at the commit
        if row.kind != Kind.CREDENTIALS.value or row.version <= device.acked_credentials_version:
            return
        settings = self.ctx.settings
        previous = device.active_slot
        device.acked_credentials_version = row.version
        device.active_slot = row.slot
        # Read in the batch when it existed then (the same object the session holds, so it
        # carries any change made since); a password created meanwhile is read here.
        in_use = (passwords or {}).get((device.token_id, row.slot))  # type: ignore[arg-type]
        if in_use is None:
            in_use = s.exec(
                select(TokenPassword).where(
                    TokenPassword.token_id == device.token_id, TokenPassword.slot == row.slot
                )
            ).first()
        device.active_expiry = in_use.expiry if in_use else None
        device.warn_due_at = (
            device.active_expiry - timedelta(days=settings.expiry_warning_days)
            if device.active_expiry
            else None
        )
        if previous and previous != row.slot:  # the old slot goes after a grace period
            device.retire_slot = previous
            device.retire_due_at = now + timedelta(seconds=settings.retire_grace_seconds)
        s.add(device)
