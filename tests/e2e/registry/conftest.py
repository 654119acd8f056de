"""The real parts for end-to-end tests: a ``fleet serve`` subprocess and a Distribution registry.

The server is set up exactly as a user would: ``fleet init``, ``fleet admin create-key``, then
``fleet serve --port P --workers 2`` (gunicorn), once on SQLite in the data directory and once
on a fresh PostgreSQL schema: every test runs against both, and on PostgreSQL the two workers
learn of each other's writes only through LISTEN/NOTIFY. The registry's realm is that server's
``/oauth2/token`` and its ``rootcertbundle`` the bundle ``fleet init`` wrote. Each pair lives
for the session (pytest runs one database's tests, then the other's); tests keep out of each
other's way by using their own token and repository names. Nothing here is a mock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.e2e.stack import SERVER_ENV, Stack, registry_for
from tests.support.postgres import DATABASES, count_rows, server_database_url
from tests.support.registry import Registry


@pytest.fixture(scope="session", params=DATABASES)
def fleet_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetServer]:
    with (
        server_database_url(request.param) as url,
        FleetServer(
            tmp_path_factory.mktemp("fleet-server"), env=SERVER_ENV, database_url=url
        ) as server,
    ):
        if url:  # its API key is in its own schema, not in a file beside it
            assert count_rows(url, "api_keys") == 1
        yield server


@pytest.fixture(scope="session")
def registry(
    fleet_server: FleetServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    with registry_for(fleet_server, tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def stack(
    fleet_server: FleetServer, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    return Stack(fleet_server, registry, tmp_path_factory.mktemp("e2e-work"))
