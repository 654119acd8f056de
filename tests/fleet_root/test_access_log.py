"""The access log writes no secret that came in a URL."""

from __future__ import annotations

import pytest

from fleet.access_log import REDACTED, redact_query


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "POST /mqtt-auth/rabbitmq/user?secret=s3cr3t-value HTTP/1.1",
            f"POST /mqtt-auth/rabbitmq/user?secret={REDACTED} HTTP/1.1",
        ),
        ("a=1&SECRET=x&b=2", f"a=1&SECRET={REDACTED}&b=2"),
        ("password=p;token=t", f"password={REDACTED};token={REDACTED}"),
        ("secret=", f"secret={REDACTED}"),
        ("/x?notsecret=kept&secretive=kept", "/x?notsecret=kept&secretive=kept"),
        ("GET /api/v1/devices?top=20 HTTP/1.1", "GET /api/v1/devices?top=20 HTTP/1.1"),
    ],
)
def test_secret_parameters_are_redacted_and_nothing_else(line: str, expected: str) -> None:
    assert redact_query(line) == expected
