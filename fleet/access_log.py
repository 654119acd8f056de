"""gunicorn's access log without secrets in it.

A broker that cannot send headers (RabbitMQ 3.10's HTTP auth backend) sends fleet's broker
secret in the URL (``?secret=``), and gunicorn logs every request line whole. This logger
writes ``secret=[redacted]`` instead, for that parameter and for any other parameter named in
``REDACTED_PARAMETERS``, in the request line (``%(r)s``) and the query string (``%(q)s``).
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED_PARAMETERS = ("secret", "password", "token")
REDACTED = "[redacted]"
_PARAMETER = re.compile(
    r"(?P<key>(?:^|[?&;])(?:" + "|".join(REDACTED_PARAMETERS) + r")=)[^&;\s#]*", re.IGNORECASE
)


def redact_query(text: str) -> str:
    """``text`` (a request line or a query string) with every redacted parameter's value
    replaced."""
    return _PARAMETER.sub(lambda m: m.group("key") + REDACTED, text)


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_query(atoms[key])
        return atoms
