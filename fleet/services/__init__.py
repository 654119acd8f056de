"""The service layer: the one place that opens sessions and writes rows."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.services.api_keys import ApiKeyService
from fleet.services.context import ServiceContext
from fleet.services.registry_auth import RegistryAuthService
from fleet.services.scope_maps import ScopeMapService
from fleet.services.signing import SigningService
from fleet.services.tokens import TokenService


@dataclass
class Services:
    ctx: ServiceContext
    scope_maps: ScopeMapService
    tokens: TokenService
    api_keys: ApiKeyService
    registry_auth: RegistryAuthService
    signing: SigningService

    @classmethod
    def build(cls, ctx: ServiceContext) -> Services:
        scope_maps = ScopeMapService(ctx)
        return cls(
            ctx=ctx,
            scope_maps=scope_maps,
            tokens=TokenService(ctx, scope_maps),
            api_keys=ApiKeyService(ctx),
            registry_auth=RegistryAuthService(ctx),
            signing=SigningService.open(ctx.settings),
        )
