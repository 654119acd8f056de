"""How the dashboard shows times: relative ("3 min ago"), with the exact UTC time beside it."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from fleet.services.revocation import AccessEnd

UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def relative(at: datetime, now: datetime) -> str:
    seconds = int((now - at).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in UNITS:
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "just now"


def exact(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(at: datetime | None, now: datetime | None = None) -> Markup:
    """``<time datetime=ISO title="exact UTC">3 min ago</time>``; an em dash for no time."""
    if at is None:
        return Markup("&mdash;")
    now = now or datetime.now(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        escape(at.astimezone(UTC).isoformat()), escape(exact(at)), escape(relative(at, now))
    )


def is_whole(raw: str, max_digits: int = 19) -> bool:
    """Whether a person typed a whole number ``int()`` takes, short enough to parse cheaply.

    ``str.isdigit`` alone is not enough: it holds for '²', which ``int()`` refuses.
    """
    return raw.isascii() and raw.isdigit() and len(raw) <= max_digits


def access_sentence(access: AccessEnd) -> str:
    """A flash's sentence on when a revoked credential's registry access ends."""
    if access.ended:
        return f"Registry access ended (by {exact(access.ends_by)})."
    return f"Registry access ends by {exact(access.ends_by)}."
