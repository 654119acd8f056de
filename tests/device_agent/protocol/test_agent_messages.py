"""The status messages are typed, and one parser reads them on both sides (issue 14): every
message the agent builds parses back to itself, and anything else is refused with a reason."""

from __future__ import annotations

import json

import pytest

from device_agent.protocol.messages import (
    MAX_ERROR_CHARS,
    MAX_STATUS_BYTES,
    Ack,
    Hello,
    InvalidStatus,
    PullResult,
    Reject,
    StatusMessage,
    StatusNotJson,
    StatusTooLarge,
    encode,
    parse_status,
)

BUILT: list[StatusMessage] = [
    Hello(versions={"credentials": 3, "command": 0}, agent="0.1.0"),
    Ack("credentials", 3, "password2"),
    Ack("command", 4),
    Reject("credentials", 5, "BadSignature"),
    Reject("command", None, "Malformed"),
    PullResult.now("registry.example:5000/edge/app:1", ok=True, digest="sha256:ab", error=None),
    PullResult.now("registry.example:5000/edge/app:1", ok=False, digest=None, error="denied"),
]


@pytest.mark.parametrize("message", BUILT, ids=lambda m: m.TYPE)
def test_what_the_agent_builds_parses_back(message: StatusMessage) -> None:
    assert parse_status(encode(message)) == message
    assert json.loads(encode(message)) == dict(message)


def test_the_wire_form_is_the_protocol_s() -> None:
    assert dict(Ack("command", 2)) == {"type": "ack", "kind": "command", "version": 2}
    assert dict(Reject("credentials", None, "Malformed")) == {
        "type": "reject",
        "kind": "credentials",
        "version": None,
        "reason": "Malformed",
    }
    long = PullResult.now("a/b:1", ok=False, digest=None, error="x" * 2 * MAX_ERROR_CHARS)
    assert long.error is not None and len(long.error) == MAX_ERROR_CHARS and long.at


def test_unknown_fields_are_ignored_and_optional_ones_may_be_absent() -> None:
    assert parse_status(b'{"type": "hello"}') == Hello(versions={})
    parsed = parse_status(b'{"type": "ack", "kind": "credentials", "version": 1, "extra": [1]}')
    assert isinstance(parsed, Ack) and parsed.slot is None and parsed.version == 1
    hello = parse_status(b'{"type": "hello", "versions": {"credentials": 2, "future": "x"}}')
    assert isinstance(hello, Hello) and hello.versions == {"credentials": 2}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"x" * (MAX_STATUS_BYTES + 1), StatusTooLarge),
        (b"{" * 10_000, StatusTooLarge),
        (b"not json", StatusNotJson),
        (b"[" * 4000, StatusNotJson),
        (b"[1]", InvalidStatus),
        (b'{"type": "surprise"}', InvalidStatus),
        (b'{"type": ["hello"]}', InvalidStatus),
        (b'{"versions": {}}', InvalidStatus),
        (b'{"type": "hello", "versions": "all of them"}', InvalidStatus),
        (b'{"type": "hello", "versions": {"credentials": -1}}', InvalidStatus),
        (b'{"type": "hello", "versions": {"credentials": true}}', InvalidStatus),
        (b'{"type": "ack", "version": "x"}', InvalidStatus),
        (b'{"type": "ack", "kind": "credentials", "version": 1.5}', InvalidStatus),
        (b'{"type": "ack", "kind": "credentials", "version": 9223372036854775808}', InvalidStatus),
        (b'{"type": "ack", "kind": "other", "version": 1}', InvalidStatus),
        (b'{"type": "ack", "kind": "credentials", "version": 1, "slot": 2}', InvalidStatus),
        (b'{"type": "reject", "kind": "credentials", "version": 1}', InvalidStatus),
        (b'{"type": "pull", "image": "a/b:1"}', InvalidStatus),
        (b'{"type": "pull", "ok": true}', InvalidStatus),
    ],
)
def test_bad_input_is_refused_with_a_reason(payload: bytes, error: type[InvalidStatus]) -> None:
    with pytest.raises(error) as caught:
        parse_status(payload)
    assert str(caught.value)
