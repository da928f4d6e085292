"""The console's pictures: SVG drawn here, in the page, from plain numbers. Pure.

Every mark carries a ``<title>`` (the numbers, shown on hover), and every chart has the
same numbers in a table beside it. Only presentation attributes are used (no ``style``),
so the pages' Content-Security-Policy needs no ``unsafe-inline``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from itertools import pairwise
from zoneinfo import ZoneInfo

from markupsafe import Markup

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
SENT, DEAD, OURS, THEIRS, LINE, WARN = (
    "#2e7d32", "#c62828", "#1565c0", "#90a4ae", "#6a1b9a", "#c62828",
)


def local(moment: datetime) -> datetime:
    """A UTC moment as the clock in Vietnam shows it."""
    return moment.astimezone(VIETNAM)


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(  # noqa: S704 - every text inside went through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 11,
          fill: str = "#444") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}">{escape(text)}</text>')


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10.0 ** len(str(int(value))) / 10
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * mult:
            return float(step * mult)
    return float(value)


@dataclass(frozen=True)
class Bar:
    """One bar of a stacked chart: a label and its parts' values, bottom first."""

    label: str
    values: tuple[int, ...]
    tick: str = ""


def stacked_bars(bars: Sequence[Bar], names: Sequence[str], colors: Sequence[str],
                 *, label: str, width: int = 720, height: int = 180) -> Markup:
    """Bars of stacked parts; each part's title gives the bar's numbers."""
    left, bottom, top = 44, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = _nice_max(max((sum(b.values) for b in bars), default=0))
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
            'stroke="#999"/>',
            _text(left - 4, top + 8, f"{peak:g}", anchor="end"),
            _text(left - 4, top + plot_h, "0", anchor="end")]
    slot = plot_w / max(len(bars), 1)
    for i, bar in enumerate(bars):
        x = left + i * slot + 1
        y = float(top + plot_h)
        summary = f"{bar.label}: " + ", ".join(
            f"{v} {n}" for v, n in zip(bar.values, names, strict=True))
        for value, color in zip(bar.values, colors, strict=True):
            h = plot_h * value / peak
            y -= h
            if value:
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" '
                            f'height="{h:.1f}" fill="{color}"><title>{escape(summary)}'
                            "</title></rect>")
        # an invisible full-height target, so an empty bar still answers on hover
        body.append(f'<rect x="{x:.1f}" y="{top}" width="{max(slot - 2, 1):.1f}" '
                    f'height="{plot_h}" fill="transparent"><title>{escape(summary)}</title>'
                    "</rect>")
        if bar.tick:
            body.append(_text(x + slot / 2, height - 8, bar.tick, anchor="middle", size=10))
    return _svg(width, height, label, body)


def hbars(rows: Sequence[tuple[str, int]], *, label: str, width: int = 420,
          color: str = DEAD) -> Markup:
    """Horizontal bars, one per row, longest first as given."""
    row_h, left = 22, 150
    height = max(len(rows), 1) * row_h + 6
    peak = max((n for _, n in rows), default=0) or 1
    body: list[str] = []
    for i, (name, n) in enumerate(rows):
        y = 4 + i * row_h
        w = (width - left - 50) * n / peak
        body.append(_text(left - 6, y + 14, name, anchor="end"))
        body.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 8}"'
                    f' fill="{color}"><title>{escape(f"{name}: {n:,}")}</title></rect>')
        body.append(_text(left + w + 6, y + 14, f"{n:,}"))
    if not rows:
        body.append(_text(8, 18, "none"))
    return _svg(width, height, label, body)


def line(points: Sequence[tuple[datetime, float]], *, label: str, start: datetime,
         end: datetime, unit: str = "", width: int = 720, height: int = 200) -> Markup:
    """A line over time from ``start`` to ``end``; each point's title gives its value."""
    left, bottom, top = 64, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = _nice_max(max((v for _, v in points), default=0))
    span = max((end - start).total_seconds(), 1.0)

    def xy(at: datetime, v: float) -> tuple[float, float]:
        return (left + plot_w * (at - start).total_seconds() / span,
                top + plot_h - plot_h * v / peak)

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
            'stroke="#999"/>',
            _text(left - 4, top + 8, f"{peak:,.0f}", anchor="end"),
            _text(left - 4, top + plot_h, "0", anchor="end")]
    day = local(start).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day < end:
        x, _ = xy(day, 0)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                    'stroke="#eee"/>')
        body.append(_text(x, height - 8, day.strftime("%d %b"), anchor="middle", size=10))
        day += timedelta(days=1)
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(a, v) for a, v in points))
        body.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
        # many points: hover targets only, a dot each would thicken the line into a rope
        dot = LINE if len(points) <= 60 else "transparent"
        for at, v in points:
            x, y = xy(at, v)
            tip = f"{local(at):%d %b %H:%M}: {v:,.0f}{unit}"
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{dot}">'
                        f"<title>{escape(tip)}</title></circle>")
    else:
        body.append(_text(left + 8, top + 20, "no balance polls in this period"))
    return _svg(width, height, label, body)


def runout(readings: Sequence[tuple[datetime, Decimal]]) -> datetime | None:
    """When the balance reaches zero at the rate it was spent over ``readings`` (oldest
    first): the falls added up (a top-up is not spending) over the time they cover.
    None without at least an hour of readings that fell."""
    if len(readings) < 2:
        return None
    spent = sum((max(a[1] - b[1], Decimal(0)) for a, b in pairwise(readings)), Decimal(0))
    seconds = (readings[-1][0] - readings[0][0]).total_seconds()
    if spent <= 0 or seconds < 3600:
        return None
    per_second = float(spent) / seconds
    last_at, last = readings[-1]
    if last <= 0:
        return last_at
    return last_at + timedelta(seconds=float(last) / per_second)
