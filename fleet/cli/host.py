"""Server-host commands need the whole server (SQLModel, Alembic, keys); operator commands
need none of it. These wrappers import it on first use, so ``fleet token list`` starts fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.config import Settings
    from fleet.services import Services


def load_settings(**kwargs: Any) -> Settings:
    from fleet.config import load_settings as load

    return load(**kwargs)


def build_services(settings: Settings, *, listen_status: bool = True) -> Services:
    from fleet.bootstrap import build_services as build

    return build(settings, listen_status=listen_status)


def initialise(settings: Settings, say: Callable[[str], None]) -> Services:
    from fleet.bootstrap import initialise as init

    return init(settings, say)
