"""Where the broker is: ``mqtt://host[:port]`` (plain) or ``mqtts://host[:port]`` (TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fleet.domain.errors import ValidationError

PLAIN_SCHEME = "mqtt"
TLS_SCHEME = "mqtts"
DEFAULT_PLAIN_PORT = 1883
DEFAULT_TLS_PORT = 8883
_DEFAULT_PORTS = {PLAIN_SCHEME: DEFAULT_PLAIN_PORT, TLS_SCHEME: DEFAULT_TLS_PORT}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    # CA bundle for mqtts; None uses the system's trusted CAs.
    ca_file: str | None = None

    @property
    def url(self) -> str:
        scheme = TLS_SCHEME if self.tls else PLAIN_SCHEME
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def _redacted(url: str) -> str:
    """The URL without any user:password@ part, fit for an error message."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def parse_broker_url(url: str, *, ca_file: str | None = None) -> BrokerAddress:
    def invalid(reason: str) -> ValidationError:
        return ValidationError(
            f"invalid broker URL {_redacted(url)!r}: {reason} (expected mqtt://host[:port] "
            "or mqtts://host[:port])",
            code="InvalidBrokerUrl",
        )

    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise invalid(f"unknown scheme {parts.scheme!r}")
    if parts.username or parts.password:
        raise invalid("put the login in the configuration, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise invalid("no path, query or fragment allowed")
    try:
        port = parts.port
    except ValueError:
        raise invalid("bad port") from None
    if not parts.hostname:
        raise invalid("no host")
    return BrokerAddress(
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == TLS_SCHEME,
        ca_file=ca_file,
    )
