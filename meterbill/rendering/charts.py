"""Usage charts as inline SVG (matplotlib, Agg: no display, no JavaScript, nothing fetched).

Minimal version for the customer portal; the reports work (wt-reports) writes the full one with
this same signature, which replaces it on merge."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal


def usage_chart_svg(points: list[tuple[datetime, Decimal]], title: str, unit: str) -> str:
    """One bar per point (start of the window, value), as an ``<svg>`` element (no XML prolog)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.4), dpi=100)
    ax = fig.add_subplot()
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    if xs:
        from matplotlib.dates import DateFormatter

        ax.bar(xs, ys, width=0.8, color="#1f4e79")
        ax.xaxis.set_major_formatter(DateFormatter("%d %b"))
        if len(xs) < 7:   # a few days: keep bars day-wide, not stretched over the axis
            from datetime import timedelta

            ax.set_xlim(min(xs) - timedelta(days=1), max(xs) + timedelta(days=7 - len(xs) + 1))
        fig.autofmt_xdate()
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
