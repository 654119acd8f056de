"""The overview: counters that link to filtered device lists, what fails, and the week's chart."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import current_app, render_template, request

from fleet.web.blueprint import web
from fleet.web.chart import build_chart
from fleet.web.session import services


def devices_link(**params: str) -> str | None:
    """The device list with these filters (the Devices page keeps its filters in the URL);
    None while the server has no Devices page, so a counter is never a link to a 404."""
    if "web.devices" not in current_app.view_functions:
        return None
    return f"{request.script_root}/ui/devices?{urlencode(params)}"


@web.get("/overview")
def overview() -> Any:
    svc = services()
    view = svc.overview.page(broker=svc.broker)
    links = {
        "active": devices_link(status="active"),
        "pending_approval": devices_link(status="pending"),
        "disabled": devices_link(status="disabled"),
        "expiring": devices_link(expiring="1"),
        "pending": devices_link(pending="1"),
        "not_seen": devices_link(not_seen="1"),
    }
    return render_template(
        "overview.html", view=view, links=links, chart=build_chart(view.chart), now=view.now
    )
