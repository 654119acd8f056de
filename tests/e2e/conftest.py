"""The real parts for end-to-end tests: a ``fleet serve`` subprocess and a Distribution registry.

The server is set up exactly as a user would: ``fleet init``, ``fleet admin create-key``, then
``fleet serve --port P --workers 2`` (gunicorn, SQLite in the data directory). The registry's
realm is that server's ``/oauth2/token`` and its ``rootcertbundle`` the bundle ``fleet init``
wrote. Both live for the session and are stopped at its end; tests keep out of each other's way
by using their own token and repository names. Nothing here is a mock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.e2e.stack import ISSUER, SERVER_ENV, SERVICE, Stack
from tests.support.registry import Registry


@pytest.fixture(scope="session")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with FleetServer(tmp_path_factory.mktemp("fleet-server"), env=SERVER_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def registry(
    fleet_server: FleetServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    with Registry(
        realm=fleet_server.realm,
        service=SERVICE,
        issuer=ISSUER,
        rootcertbundle=fleet_server.bundle,
        directory=tmp_path_factory.mktemp("registry"),
    ) as registry:
        yield registry


@pytest.fixture(scope="session")
def stack(
    fleet_server: FleetServer, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    return Stack(fleet_server, registry, tmp_path_factory.mktemp("e2e-work"))
