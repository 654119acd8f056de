"""One error hierarchy for the whole service; the edges (HTTP, CLI) map it once.

Each error carries a stable machine-readable ``code`` and a message meant for a person.
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error the service layer raises on purpose."""

    code = "FleetError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ValidationError(FleetError):
    """Bad input: nothing was changed."""

    code = "InvalidRequest"


class NotFoundError(FleetError):
    code = "NotFound"


class ConflictError(FleetError):
    """The request clashes with what exists (a name taken, a map in use)."""

    code = "Conflict"


class LimitExceededError(FleetError):
    code = "LimitExceeded"


class ReadOnlyError(FleetError):
    """System-defined objects cannot be changed."""

    code = "ReadOnly"


class AuthenticationError(FleetError):
    code = "Unauthorized"


class PermissionDeniedError(FleetError):
    code = "Forbidden"


class TooManyRequestsError(FleetError):
    """Refused for now: too many attempts; ``retry_after`` says how many seconds to wait."""

    code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
