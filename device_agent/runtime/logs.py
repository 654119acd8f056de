"""Logging for the agent: one line per event on stderr (journald adds the time), and a filter
that blanks any secret the agent holds should one ever reach a message, an argument or a
traceback (a library's exception text, say). Passwords are never logged on purpose; this is the
belt to those braces.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

FORMAT = "%(levelname)s %(name)s: %(message)s"
MASK = "[redacted]"
MAX_SECRETS = 16
MIN_SECRET_CHARS = 6

_secrets: deque[str] = deque(maxlen=MAX_SECRETS)
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Blank ``value`` in every later log record (the newest MAX_SECRETS values are kept)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            if value not in _secrets:
                _secrets.append(value)


def redact(text: str) -> str:
    with _lock:
        held = list(_secrets)
    for secret in held:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def setup_logging(level: str = "info") -> None:
    """Like ``logging.basicConfig``: nothing changes when the root logger already has handlers
    (a host program or a test runner configured logging)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
