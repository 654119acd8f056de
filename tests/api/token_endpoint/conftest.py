"""The token endpoint's tests run with the credential cache on and off (FLEET_CREDENTIAL_CACHE),
each on SQLite and PostgreSQL: what the endpoint answers must not depend on the cache."""

from __future__ import annotations

import pytest

from fleet.services import Services


@pytest.fixture(params=["on", "off"], ids=["cache-on", "cache-off"])
def services(request: pytest.FixtureRequest, make_services) -> Services:  # type: ignore[no-untyped-def]
    built: Services = make_services(credential_cache=request.param)
    return built
