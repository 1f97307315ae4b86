"""The customer portal's pages (Jinja2, autoescaped): the overview and the plain error page.

Self-contained: inline CSS (readable on a phone: one column below 640 px), usage charts as inline
SVG, no JavaScript, nothing loaded from anywhere else. Context is prepared here from the portal
service's overview (``services/portal.py``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import jinja2
from markupsafe import Markup

from meterbill.domain.instants import parse_instant
from meterbill.rendering.branding import Branding
from meterbill.rendering.templates_portal import ERROR_HTML, PORTAL_HTML
from meterbill.rendering.view import fmt_day, fmt_period, group_digits

ChartFn = Callable[[list[tuple[datetime, Decimal]], str, str], str]


def chart_svg(points: list[tuple[datetime, Decimal]], title: str, unit: str) -> str:
    """The one call into the charts module (the reports work owns ``usage_chart_svg``)."""
    from meterbill.rendering.charts import usage_chart_svg

    return usage_chart_svg(points, title, unit)


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _money(amount: Any, currency: str) -> str:
    return f"{group_digits(amount)} {currency}" if amount is not None else "—"


def _day(value: Any) -> str:
    return fmt_day(value, timezone.utc) if value else ""


def portal_context(view: Mapping[str, Any], token_path: str, form_value: str, chart: ChartFn = chart_svg,
                   message: str | None = None, error: str | None = None) -> dict[str, Any]:
    bill = view["bill"]
    currency = bill["currency"]
    period = bill["period"]
    lines = [{"description": ln.get("description", ""), "quantity": group_digits(ln["quantity"])
              if ln.get("quantity") is not None else "", "amount": _money(ln.get("amount"), currency)}
             for ln in bill.get("lines", [])]
    usage_lines = {ln.get("meter"): ln for ln in bill.get("lines", []) if ln.get("type") == "usage"}
    meters = []
    for series in view["usage"]:
        code = series["meter"]
        unit = view["units"].get(code, "")
        points = [(parse_instant(p["start"], "start"), Decimal(p["value"])) for p in series["points"]]
        total = usage_lines.get(code, {}).get("quantity")
        meters.append({"code": code, "unit": unit, "total": group_digits(total) if total is not None else
                       group_digits(sum((v for _, v in points), Decimal(0))),
                       "chart": Markup(chart(points, code, unit))})
    credits = view["credits"]
    invoices = [{"number": inv.get("number") or inv["id"], "status": inv.get("status", ""),
                 "period": fmt_period(inv["period"]["start"], inv["period"]["end"], timezone.utc, "UTC"),
                 "total": _money(inv.get("total"), inv.get("currency", currency)),
                 "html": f"{token_path}/invoices/{inv['id']}.html", "pdf": f"{token_path}/invoices/{inv['id']}.pdf"}
                for inv in view["invoices"]]
    budget = view["budget"]
    return {
        "customer": view["customer"], "currency": currency,
        "period": fmt_period(period["start"], period["end"], timezone.utc, "UTC"),
        "bill": {"lines": lines, "subtotal": _money(bill.get("subtotal"), currency),
                 "tax": _money(bill.get("tax_total"), currency), "total": _money(bill.get("total"), currency)},
        "meters": meters,
        "credits": {"balance": _money(credits.get("balance"), credits.get("currency", currency)),
                    "grants": [{"id": g["id"], "remaining": _money(g.get("remaining"), g.get("currency", currency)),
                                "expires": _day(g.get("expires_at")), "status": g.get("status", "")}
                               for g in credits.get("grants", [])]},
        "invoices": invoices,
        "budget": None if budget is None else {
            "amount": _money(budget["amount"], budget["currency"]), "raw_amount": str(budget["amount"]),
            "thresholds": ", ".join(str(t) for t in budget["thresholds"]),
            "alerts": [f"{a['threshold']} %" for a in budget.get("alerts", [])]},
        "form_action": f"{token_path}/budget", "form_value": form_value,
        "message": message, "error": error, "as_of": _day(view["now"]),
    }


def render_portal(view: Mapping[str, Any], token_path: str, form_value: str, branding: Branding,
                  chart: ChartFn = chart_svg, message: str | None = None, error: str | None = None) -> str:
    ctx = portal_context(view, token_path, form_value, chart, message, error)
    return _env().from_string(PORTAL_HTML).render(brand=branding, **ctx)


def render_error(status: int, branding: Branding) -> str:
    """The one page every refused link gets: nothing about the token or the customer."""
    title, text = {410: ("This link has expired", "Ask your provider for a new link to your billing portal."),
                   404: ("Not found", "There is nothing here.")}.get(
        status, ("This link is not valid", "Check that you copied the whole link, or ask your provider for a new one."))
    return _env().from_string(ERROR_HTML).render(brand=branding, title=title, text=text)
