"""The overview's 7-day chart as geometry for an inline SVG: one panel per series.

Each series (rotations, acknowledged deliveries, failed logins) gets its own labelled row
with its own scale, so no reader has to tell the series apart by colour. The template draws
the bars; this module only measures them, so it is a pure function a test can check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.services.overview import HourPoint

BAR_WIDTH = 5
LEFT = 150  # room for the panel's label
PANEL_HEIGHT = 56
PANEL_GAP = 22
TOP = 8
HOUR_FORMAT = "%Y-%m-%d %H:00"
SERIES = (
    ("rotations", "Rotations"),
    ("acked", "Acknowledged deliveries"),
    ("failed_logins", "Failed logins"),
)


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: float
    height: float
    value: int
    title: str  # "2026-12-02 14:00 UTC: 3 rotations"


@dataclass(frozen=True, slots=True)
class Panel:
    key: str
    label: str
    top: int
    peak: int
    total: int
    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class DayTick:
    x: int
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    baseline_width: int
    panels: list[Panel]
    days: list[DayTick]
    first: datetime | None
    last: datetime | None
    # The same figures as a table, newest hour first: (hour, rotations, acked, failed logins).
    rows: list[tuple[str, int, int, int]]


def build_chart(points: Sequence[HourPoint]) -> Chart:
    labels = [p.hour.strftime(HOUR_FORMAT) for p in points]
    panels = []
    for index, (key, label) in enumerate(SERIES):
        values = [int(getattr(p, key)) for p in points]
        peak = max(values, default=0)
        top = TOP + index * (PANEL_HEIGHT + PANEL_GAP)
        bars = []
        noun = label.lower()
        for i, (label_at, value) in enumerate(zip(labels, values, strict=True)):
            height = round(PANEL_HEIGHT * value / peak, 2) if peak else 0.0
            y = top + PANEL_HEIGHT - height
            bars.append(
                Bar(LEFT + i * BAR_WIDTH, y, height, value, f"{label_at} UTC: {value} {noun}")
            )
        panels.append(Panel(key, label, top, peak, sum(values), bars))
    days = [
        DayTick(LEFT + i * BAR_WIDTH, p.hour.strftime("%b %d"))
        for i, p in enumerate(points)
        if p.hour.hour == 0
    ]
    plot = len(points) * BAR_WIDTH
    return Chart(
        width=LEFT + plot + 10,
        height=TOP + len(SERIES) * (PANEL_HEIGHT + PANEL_GAP) + 4,
        baseline_width=plot,
        panels=panels,
        days=days,
        first=points[0].hour if points else None,
        last=points[-1].hour if points else None,
        rows=[
            (label, p.rotations, p.acked, p.failed_logins)
            for label, p in zip(reversed(labels), reversed(points), strict=True)
        ],
    )
