"""The key ring lives in the database, yet a token request adds no query for it: each process
reads the ring's version at most once per ``RING_CHECK_INTERVAL_S`` (with the credential cache
on and off, on SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from flask import Flask

from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services import Services
from tests.api.token_endpoint.test_endpoint import app, basic, get_token, token
from tests.support.statements import counted

__all__ = ["app", "token"]
REQUESTS = 20


def ring_reads(statements: list[str]) -> int:
    return sum("shared_keys" in statement for statement in statements)


def test_token_requests_read_the_ring_at_most_once_per_interval(
    app: Flask, services: Services, token: tuple[str, str]
) -> None:
    auth = basic(*token)
    assert get_token(app, auth).status_code == 200  # this worker has just rechecked the ring
    started = time.monotonic()
    with counted(services) as statements:
        for _ in range(REQUESTS):
            assert get_token(app, auth).status_code == 200
    if time.monotonic() - started < RING_CHECK_INTERVAL_S:
        assert ring_reads(statements) == 0, statements
    else:  # a slow machine: still at most one read per interval
        assert ring_reads(statements) <= (time.monotonic() - started) / RING_CHECK_INTERVAL_S + 1
    time.sleep(RING_CHECK_INTERVAL_S)
    with counted(services) as statements:
        assert get_token(app, auth).status_code == 200
    assert ring_reads(statements) == 1  # its version, one small read; nothing changed
