"""The service layer: the one place that opens sessions and writes rows."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.services.access import AccessService
from fleet.services.api_keys import ApiKeyService
from fleet.services.audit import AuditService
from fleet.services.broker import Broker, MosquittoBroker, NoBroker
from fleet.services.context import ServiceContext
from fleet.services.delivery import DeliveryService
from fleet.services.devices import DeviceService
from fleet.services.groups import GroupService
from fleet.services.health import HealthRecorder
from fleet.services.operators import OperatorService
from fleet.services.overview import OverviewService
from fleet.services.registry_auth import RegistryAuthService
from fleet.services.scope_maps import ScopeMapService
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
    delivery: DeliveryService
    devices: DeviceService
    status_intake: StatusIntake
    access: AccessService
    broker: Broker | None = None
    # Whether this process hears device status (web workers do; a one-off command must not:
    # it would take its share of the status stream and exit with it unhandled).
    listen_status: bool = True

    @classmethod
    def build(
        cls, ctx: ServiceContext, envelope_key: Ed25519PrivateKey, broker: Broker | None = None
    ) -> Services:
        scope_maps = ScopeMapService(ctx)
        tokens = TokenService(ctx, scope_maps)
        holder: list[Services] = []
        delivery = DeliveryService(ctx, lambda: holder[0].connected_broker(), envelope_key)
        services = cls(
            ctx=ctx,
            scope_maps=scope_maps,
            tokens=tokens,
            api_keys=ApiKeyService(ctx),
            operators=OperatorService(ctx),
            audit=AuditService(ctx),
            overview=OverviewService(ctx),
            health=HealthRecorder(ctx, flush_interval_s=ctx.settings.health_flush_seconds),
            registry_auth=RegistryAuthService(ctx),
            signing=SigningService.open(ctx.settings),
            groups=GroupService(ctx),
            delivery=delivery,
            devices=DeviceService(ctx, tokens, delivery),
            status_intake=StatusIntake(
                delivery.handle_status,
                limiter=status_limiter(ctx.settings),
                on_dropped=delivery.record_throttled,
                report_every_s=ctx.settings.status_report_seconds,
            ),
            access=AccessService(ctx),
            broker=broker,
        )
        holder.append(services)
        return services

    def connected_broker(self) -> Broker:
        """The broker, created on first use (no connection is opened before it is needed)."""
        if self.broker is None:
            settings = self.ctx.settings
            if settings.mqtt_url:
                self.broker = MosquittoBroker(
                    settings,
                    self.ctx.hasher,
                    self.status_intake.submit if self.listen_status else None,
                    on_reconnect=self.delivery.republish_all_pending,
                )
            else:
                self.broker = NoBroker(
                    "no MQTT broker is configured: set FLEET_MQTT_URL, "
                    "FLEET_MQTT_ADMIN_USERNAME and FLEET_MQTT_ADMIN_PASSWORD"
                )
        return self.broker

    def close(self) -> None:
        self.health.stop()
        if self.broker is not None:
            self.broker.close()
        self.status_intake.stop()
        self.ctx.db.dispose()
