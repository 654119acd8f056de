"""Errors raised when the broker cannot be reached or refuses what we ask of it."""

from __future__ import annotations

from fleet.domain.errors import ConflictError, FleetError, NotFoundError


class BrokerError(FleetError):
    """Base of every broker-side failure."""

    code = "BrokerError"


class BrokerUnavailableError(BrokerError):
    """No connection to the broker, or it went away while we waited for an answer."""

    code = "BrokerUnavailable"


class BrokerTimeoutError(BrokerUnavailableError):
    """The broker did not answer in time; the request may or may not have been applied."""

    code = "BrokerTimeout"


class PublishRejectedError(BrokerError):
    """The broker answered a publish with a failure reason code (MQTT 5), e.g. not authorized."""

    code = "PublishRejected"


class DynsecCommandError(BrokerError):
    """A dynamic-security command came back with an error.

    ``command`` is the dynsec command name, ``error`` the broker's own words
    (for example ``"Client not found"``).
    """

    code = "BrokerCommandFailed"

    def __init__(self, command: str, target: str, error: str) -> None:
        super().__init__(f"broker command {command} on {target!r} failed: {error}")
        self.command = command
        self.target = target
        self.error = error


class DynsecNotFoundError(DynsecCommandError, NotFoundError):
    code = "NotFound"


class DynsecConflictError(DynsecCommandError, ConflictError):
    code = "Conflict"
