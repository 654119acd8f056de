"""Pruning: finished deliveries and audit events are deleted once older than their retention.

At 100,000 devices the two tables hold millions of rows, so a pass deletes in batches, each in
a transaction of its own (a bounded number of rows locked, a bounded WAL), finding them through
the existing indexes: acknowledged deliveries by ``acked_at`` (ix_deliveries_acked_at),
superseded ones by kind and ``created_at`` (ix_deliveries_kind_created_at), audit events by
``at`` (ix_audit_events_at). A pending delivery is never pruned, however old: it is what the
device is still owed. A pass stops after a bounded number of batches; the next one goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from device_agent.protocol import Kind
from fleet.db.devices import DELIVERY_ACKED, DELIVERY_SUPERSEDED, Delivery
from fleet.db.models import AuditEvent
from fleet.services.context import ServiceContext, audit

log = logging.getLogger(__name__)

PRUNE_BATCH = 1000
MAX_BATCHES = 200  # per kind of row and pass: at most 200,000 of each, the rest next pass
ACTOR = "scheduler"
PRUNED = "retention.pruned"

_Batch = Callable[[datetime], int]  # deletes one batch older than the cutoff; how many


@dataclass
class PruneSummary:
    deliveries: int = 0
    audit_events: int = 0
    more: bool = False  # a kind of row still had some over its retention when the pass ended

    @property
    def total(self) -> int:
        return self.deliveries + self.audit_events

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class RetentionService:
    def __init__(
        self, ctx: ServiceContext, batch: int = PRUNE_BATCH, max_batches: int = MAX_BATCHES
    ) -> None:
        self.ctx = ctx
        self.batch = batch
        self.max_batches = max_batches

    def prune(self) -> PruneSummary:
        """One pass; logged, and recorded as one audit event when it pruned anything."""
        settings = self.ctx.settings
        now = self.ctx.clock()
        summary = PruneSummary()
        deliveries_before = now - timedelta(days=settings.delivery_retention_days)
        summary.deliveries += self._batches(summary, self._acked_deliveries, deliveries_before)
        for kind in Kind:
            summary.deliveries += self._batches(
                summary, self._superseded_deliveries(kind.value), deliveries_before
            )
        audit_before = now - timedelta(days=settings.audit_retention_days)
        summary.audit_events = self._batches(summary, self._audit_events, audit_before)
        if summary.total:
            log.info(
                "retention: pruned %d deliveries (older than %d days) and %d audit events "
                "(older than %d days)%s",
                summary.deliveries,
                settings.delivery_retention_days,
                summary.audit_events,
                settings.audit_retention_days,
                "; more next pass" if summary.more else "",
            )
            with self.ctx.db.session() as s:
                audit(
                    s,
                    self.ctx,
                    ACTOR,
                    PRUNED,
                    "retention",
                    deliveries=summary.deliveries,
                    auditEvents=summary.audit_events,
                    more=summary.more,
                )
        return summary

    def _batches(self, summary: PruneSummary, one: _Batch, before: datetime) -> int:
        total = 0
        for _ in range(self.max_batches):
            done = one(before)
            total += done
            if done < self.batch:
                return total
        summary.more = True
        return total

    def _acked_deliveries(self, before: datetime) -> int:
        ids = select(Delivery.id).where(
            col(Delivery.acked_at) < before, Delivery.state == DELIVERY_ACKED
        )
        return self._delete(Delivery, ids.order_by(col(Delivery.acked_at)))

    def _superseded_deliveries(self, kind: str) -> _Batch:
        def one(before: datetime) -> int:
            ids = select(Delivery.id).where(
                Delivery.kind == kind,
                col(Delivery.created_at) < before,
                Delivery.state == DELIVERY_SUPERSEDED,
            )
            return self._delete(Delivery, ids.order_by(col(Delivery.created_at)))

        return one

    def _audit_events(self, before: datetime) -> int:
        ids = select(AuditEvent.id).where(col(AuditEvent.at) < before)
        return self._delete(AuditEvent, ids.order_by(col(AuditEvent.at)))

    def _delete(self, table: type[Delivery] | type[AuditEvent], ids: object) -> int:
        """One batch of the rows ``ids`` selects, deleted in a transaction of its own."""
        with self.ctx.db.session() as s:
            found = list(s.exec(ids.limit(self.batch)).all())  # type: ignore[attr-defined]
            if found:
                s.exec(delete(table).where(col(table.id).in_(found)))  # type: ignore[arg-type]
            return len(found)
