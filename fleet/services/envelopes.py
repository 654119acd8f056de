"""Sealing envelopes and queueing them as deliveries, inside the caller's transaction.

Both the delivery service (commands, a device's status answered) and the rotation service (new
passwords) queue through here; publishing what was queued is the delivery service's part, after
the transaction has committed.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlmodel import Session, col

from device_agent.protocol import Kind, seal, x25519_public_from_b64
from fleet.db.devices import DELIVERY_PENDING, DELIVERY_SUPERSEDED, Delivery, Device
from fleet.mqtt import topics
from fleet.services.context import ServiceContext


class EnvelopeQueue:
    def __init__(self, ctx: ServiceContext, envelope_key: Ed25519PrivateKey) -> None:
        self.ctx = ctx
        self.envelope_key = envelope_key

    def server_signing_key(self) -> str:
        """The base64 of the raw Ed25519 public key that verifies every envelope (enrollment
        hands it to the device)."""
        raw = self.envelope_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def _queue(
        self,
        s: Session,
        device: Device,
        kind: Kind,
        payload: dict[str, Any],
        slot: str | None = None,
    ) -> Delivery:
        now = self.ctx.clock()
        device.last_version += 1
        sealed = seal(
            payload,
            device_id=device.device_id,
            version=device.last_version,
            kind=kind,
            device_public_key=x25519_public_from_b64(device.x25519_public),
            server_private_key=self.envelope_key,
            now=now,
        )
        topic = (topics.credentials_topic if kind is Kind.CREDENTIALS else topics.commands_topic)(
            device.device_id
        )
        row = Delivery(
            device_pk=device.id,
            version=device.last_version,
            kind=kind.value,
            topic=topic,
            envelope=sealed,
            slot=slot,
            created_at=now,
            next_attempt_at=now,
        )
        s.add(device)
        s.add(row)
        return row

    def supersede_pending_credentials(self, s: Session, device_pks: list[int]) -> None:
        """Pending credentials of these devices will never be wanted: a newer one follows."""
        s.exec(
            update(Delivery)
            .where(
                col(Delivery.device_pk).in_(device_pks),
                col(Delivery.kind) == Kind.CREDENTIALS.value,
                col(Delivery.state) == DELIVERY_PENDING,
            )
            .values(state=DELIVERY_SUPERSEDED, envelope=None)
        )

    def queue_credentials(
        self,
        s: Session,
        device: Device,
        *,
        login_server: str,
        username: str,
        password: str,
        slot: str,
        expiry: datetime | None,
    ) -> Delivery:
        payload = {
            "kind": Kind.CREDENTIALS.value,
            "login_server": login_server,
            "username": username,
            "password": password,
            "slot": slot,
            "expiry": expiry.isoformat() if expiry else None,
        }
        return self._queue(s, device, Kind.CREDENTIALS, payload, slot)

    def queue_command(self, s: Session, device: Device, command: str, **args: Any) -> Delivery:
        return self._queue(
            s, device, Kind.COMMAND, {"kind": Kind.COMMAND.value, "command": command, **args}
        )
