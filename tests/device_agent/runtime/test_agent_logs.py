"""Logs never carry a secret: the agent never logs one on purpose, and the redacting filter
blanks any that a library's message or a traceback might carry."""

from __future__ import annotations

import io
import logging

import pytest

from device_agent.runtime.logs import FORMAT, MASK, RedactingFilter, register_secret


@pytest.fixture
def logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.agent.redaction")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, stream


def test_registered_secrets_are_blanked_in_messages_arguments_and_tracebacks(logger) -> None:
    log, stream = logger
    register_secret("fltp_secret-password-1")
    register_secret("abc")  # too short to register: would blank ordinary words
    log.info("abc stays")
    log.warning("token endpoint said %s", "no for fltp_secret-password-1")
    try:
        raise RuntimeError("boom fltp_secret-password-1")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert "fltp_secret-password-1" not in text and "abc stays" in text
    # the message, the exception text (and the traceback's source line, which holds it too)
    assert text.count(MASK) >= 2 and "boom" in text


def test_unregistered_text_is_untouched(logger) -> None:
    log, stream = logger
    log.info("pulled %s", "registry.example:5000/samples/app:1.0")
    assert "registry.example:5000/samples/app:1.0" in stream.getvalue()
