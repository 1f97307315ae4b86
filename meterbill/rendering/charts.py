"""Charts for people: usage over time, and reports as bars, as SVG text or PNG bytes.

Drawn by matplotlib (Agg for PNG, its SVG backend for SVG) on a ``Figure`` of its own per call:
no pyplot, no global figure state, safe from several threads. matplotlib is an optional extra
(``meterbill[charts]``, in ``local`` and ``dev``) imported only inside these functions, so no
Lambda cold path ever loads it (``tests/unit/test_charts.py`` checks both).

SVG keeps its text as text (``svg.fonttype: none``): the title, axis labels and values can be
searched, scaled and read by a screen reader, and the document embeds inline in an HTML page
(no XML declaration, no fixed id clashes: ids are salted with the title). Output is
deterministic: no date in the metadata, the same hash salt for the same chart.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["bar_chart_png", "bar_chart_svg", "usage_chart_png", "usage_chart_svg"]

Point = tuple[datetime, Decimal]
SERIES_GID = "series"  # the <g id> holding a usage chart's line and one <use> per point
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.6, 100
COLOURS = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2")


def usage_chart_svg(points: list[Point], title: str, unit: str) -> str:
    """A line chart of ``points`` (window start, value) as an SVG document (text, inline-able)."""
    return _svg(_usage_figure(points, title, unit), title)


def usage_chart_png(points: list[Point], title: str, unit: str) -> bytes:
    """The same chart as ``usage_chart_svg``, as PNG bytes."""
    return _png(_usage_figure(points, title, unit))


def bar_chart_svg(categories: Sequence[str], series: dict[str, Sequence[Decimal]], title: str, unit: str) -> str:
    """Grouped bars: one group per category, one bar per series (e.g. billed / collected / outstanding)."""
    return _svg(_bar_figure(categories, series, title, unit), title)


def bar_chart_png(categories: Sequence[str], series: dict[str, Sequence[Decimal]], title: str, unit: str) -> bytes:
    return _png(_bar_figure(categories, series, title, unit))


def _figure() -> Any:
    from matplotlib.figure import Figure  # lazy: optional extra, never on a Lambda cold path
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))
    return fig, ax


def _usage_figure(points: list[Point], title: str, unit: str) -> Any:
    from matplotlib import dates as mdates

    fig, ax = _figure()
    ax.set_title(title, loc="left", fontsize=12)
    ax.set_ylabel(unit)
    ax.grid(True, axis="y", color="#e5e7eb")
    ax.spines[["top", "right"]].set_visible(False)
    if not points:
        ax.text(0.5, 0.5, "no usage in this range", ha="center", va="center", transform=ax.transAxes, color="#6b7280")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    ordered = sorted(points, key=lambda p: p[0])
    tz = ordered[0][0].tzinfo
    xs = [p[0] for p in ordered]
    ys = [float(p[1]) for p in ordered]  # drawing only: the numbers people read stay exact in the report
    (line,) = ax.plot(xs, ys, marker="o", markersize=3 if len(xs) > 60 else 5, linewidth=1.6, color=COLOURS[0])
    line.set_gid(SERIES_GID)
    ax.fill_between(xs, ys, alpha=0.12, color=COLOURS[0])
    ax.set_ylim(bottom=min(0.0, min(ys)))
    if xs[0] == xs[-1]:   # one instant: a day around it, not matplotlib's default of years
        ax.set_xlim(xs[0] - timedelta(hours=12), xs[0] + timedelta(hours=12))
    locator = mdates.AutoDateLocator(tz=tz)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    return fig


def _bar_figure(categories: Sequence[str], series: dict[str, Sequence[Decimal]], title: str, unit: str) -> Any:
    fig, ax = _figure()
    ax.set_title(title, loc="left", fontsize=12)
    ax.set_ylabel(unit)
    ax.grid(True, axis="y", color="#e5e7eb")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if not categories or not series:
        ax.text(0.5, 0.5, "nothing in this range", ha="center", va="center", transform=ax.transAxes, color="#6b7280")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    width = 0.8 / len(series)
    positions = range(len(categories))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar([p + (i - (len(series) - 1) / 2) * width for p in positions], [float(v) for v in values],
                      width, label=name, color=COLOURS[i % len(COLOURS)])
        for j, patch in enumerate(bars):
            patch.set_gid(f"bar-{i}-{j}")  # series i, category j
    ax.set_xticks(list(positions), list(categories), rotation=30 if len(categories) > 6 else 0, ha="right"
                  if len(categories) > 6 else "center", fontsize=8)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    return fig


def _svg(fig: Any, title: str) -> str:
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"meterbill:{title}"}):
        fig.savefig(out, format="svg", metadata={"Date": None, "Title": title})
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline-able: without the XML declaration and DOCTYPE


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
