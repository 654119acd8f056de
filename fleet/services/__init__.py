"""The service layer: the one place that opens sessions and writes rows.

:meth:`Services.build` is where the services are made, each with its collaborators passed to
its constructor, in an order with no cycle: envelopes -> rotation -> delivery -> devices. The
broker is the one cycle of the system (delivery publishes through it; it calls back with what
devices say and when it reconnects); :class:`~fleet.services.broker.BrokerLink` makes it on first
use, and the handlers it calls subscribe once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.services.access import AccessService
from fleet.services.api_keys import ApiKeyService
from fleet.services.audit import AuditService
from fleet.services.broker import Broker, BrokerLink
from fleet.services.bulk_jobs import BulkJobService
from fleet.services.context import ServiceContext
from fleet.services.delivery import DeliveryService
from fleet.services.devices import DeviceService
from fleet.services.envelopes import EnvelopeQueue
from fleet.services.groups import GroupService
from fleet.services.health import HealthRecorder
from fleet.services.operators import OperatorService
from fleet.services.outbox import WebhookSender
from fleet.services.overview import OverviewService
from fleet.services.reconciler import Reconciler
from fleet.services.registry_auth import RegistryAuthService
from fleet.services.retention import RetentionService
from fleet.services.rotation import RotationService
from fleet.services.scheduler_runs import SchedulerRunService
from fleet.services.scope_maps import ScopeMapService
from fleet.services.shared_keys import DatabaseRingStore, SharedKeys
from fleet.services.signing import SigningService
from fleet.services.status_intake import StatusIntake, status_limiter
from fleet.services.tokens import TokenService


@dataclass
class Services:
    ctx: ServiceContext
    scope_maps: ScopeMapService
    tokens: TokenService
    api_keys: ApiKeyService
    operators: OperatorService
    audit: AuditService
    overview: OverviewService
    health: HealthRecorder
    registry_auth: RegistryAuthService
    signing: SigningService
    groups: GroupService
    envelopes: EnvelopeQueue
    rotation: RotationService
    delivery: DeliveryService
    devices: DeviceService
    status_intake: StatusIntake
    access: AccessService
    reconciler: Reconciler
    retention: RetentionService
    scheduler_runs: SchedulerRunService
    webhook: WebhookSender
    broker_link: BrokerLink
    jobs: BulkJobService

    @classmethod
    def build(
        cls,
        ctx: ServiceContext,
        envelope_key: Ed25519PrivateKey,
        broker: Broker | None = None,
        *,
        listen_status: bool = True,
    ) -> Services:
        """Every service of a process. ``listen_status=False`` for a one-off command: it must
        not take its share of the devices' status stream and exit with it unhandled."""
        link = BrokerLink(ctx.settings, ctx.hasher, broker, listen_status=listen_status, db=ctx.db)
        scope_maps = ScopeMapService(ctx)
        tokens = TokenService(ctx, scope_maps)
        envelopes = EnvelopeQueue(ctx, envelope_key)
        rotation = RotationService(ctx, envelopes)
        delivery = DeliveryService(ctx, link.get, rotation)
        status_intake = StatusIntake(
            delivery.handle_status,
            limiter=status_limiter(ctx.settings),
            on_dropped=delivery.record_throttled,
            report_every_s=ctx.settings.status_report_seconds,
            batch_handler=delivery.handle_statuses,
        )
        link.listen(status_intake.submit, delivery.republish_all_pending)
        devices = DeviceService(ctx, tokens, delivery, rotation, envelopes, link.get)
        return cls(
            ctx=ctx,
            scope_maps=scope_maps,
            tokens=tokens,
            api_keys=ApiKeyService(ctx),
            operators=OperatorService(ctx),
            audit=AuditService(ctx),
            overview=OverviewService(ctx),
            health=HealthRecorder(ctx, flush_interval_s=ctx.settings.health_flush_seconds),
            registry_auth=RegistryAuthService(ctx),
            signing=SigningService.open(ctx.settings, DatabaseRingStore(SharedKeys.of(ctx))),
            groups=GroupService(ctx),
            envelopes=envelopes,
            rotation=rotation,
            delivery=delivery,
            devices=devices,
            status_intake=status_intake,
            access=AccessService(ctx),
            reconciler=Reconciler(ctx, devices, delivery),
            retention=RetentionService(ctx),
            scheduler_runs=SchedulerRunService(ctx),
            webhook=WebhookSender(ctx),
            broker_link=link,
            jobs=BulkJobService(ctx, devices, delivery),
        )

    @property
    def broker(self) -> Broker | None:
        """The broker once made (or given), else ``None``: nothing connects to read this."""
        return self.broker_link.broker

    @broker.setter
    def broker(self, broker: Broker | None) -> None:
        self.broker_link.broker = broker

    def connected_broker(self) -> Broker:
        """The broker, created on first use (no connection is opened before it is needed)."""
        return self.broker_link.get()

    def close(self) -> None:
        self.jobs.stop()
        self.health.stop()
        self.broker_link.close()
        self.status_intake.stop()
        self.ctx.db.dispose()
