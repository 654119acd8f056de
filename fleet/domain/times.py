"""Times given from outside: in the future, and not further ahead than any lifetime we allow.

The bound keeps every later sum (an expiry minus a rotation window, a planned disable plus a
grace) inside what ``datetime`` and the databases can hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fleet.domain.errors import ValidationError

MAX_AHEAD_DAYS = 3650


def check_future(value: datetime, now: datetime, what: str, *, code: str) -> None:
    """``what`` names the field for a person ("the expiry", "the disable time 2027-...")."""
    if value <= now:
        raise ValidationError(f"{what} is not in the future", code=code)
    if value - now > timedelta(days=MAX_AHEAD_DAYS):
        raise ValidationError(f"{what} is more than {MAX_AHEAD_DAYS} days ahead", code=code)
