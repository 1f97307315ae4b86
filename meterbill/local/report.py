"""`meterbill report usage|revenue|aging`: a report from the HTTP API (METERBILL_API_URL with
METERBILL_API_KEY; default the running local stack's) printed as JSON, CSV or a table, and with
``--out chart.png|chart.svg`` drawn as a chart (matplotlib, ``meterbill.rendering.charts``).

``report usage --customer C`` charts that customer's usage over time (``GET
/v1/customers/{id}/usage``, windows in the customer's timezone); the other reports chart their rows
as bars, one currency per chart (``--currency`` when the report holds several)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from meterbill.local.billing_run import api_target

# (path with query) -> (status, content type, body): the HTTP call, replaceable in tests
Fetch = Callable[[str, dict[str, str]], tuple[int, str, bytes]]
CHARTS = (".png", ".svg")
AGING = ("current", "d1_30", "d31_60", "d61_90", "d90_plus")
AGING_LABELS = ("current", "1–30", "31–60", "61–90", "90+")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meterbill report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["usage", "revenue", "aging"])
    p.add_argument("--from", dest="from_", metavar="FROM", help="RFC 3339 start (default: a year before --to)")
    p.add_argument("--to", help="RFC 3339 end (default now)")
    p.add_argument("--as-of", help="aging: the date receivables are aged at (default now)")
    p.add_argument("--meter", help="only this meter")
    p.add_argument("--customer", help="only this customer (usage: its usage over time)")
    p.add_argument("--currency", help="only this currency (revenue, and the chart of a multi-currency report)")
    p.add_argument("--group-by", help="usage: customer|meter|plan|segment|tag:<key> (with --customer: a "
                                      "dimension); revenue: period|customer|plan|currency|segment|tag:<key>; "
                                      "aging: currency|customer|plan|segment|tag:<key>")
    p.add_argument("--window", choices=["hour", "day", "week", "month"], help="usage --customer: point width")
    p.add_argument("--limit", type=int, help="usage: top N customers per meter")
    p.add_argument("--format", choices=["json", "csv", "table"], default="json")
    p.add_argument("--out", help="write a chart: file.png or file.svg")
    p.add_argument("--url", help="API base URL (default: METERBILL_API_URL or the running local stack)")
    p.add_argument("--api-key", help="API key, read scope (default: METERBILL_API_KEY or the local stack's)")
    return p


def main(argv: list[str], fetch: Fetch | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out and Path(args.out).suffix.lower() not in CHARTS:
        raise SystemExit("meterbill report: --out must name a .png or .svg file")
    if fetch is None:
        fetch = http_fetch(*api_target(args.url, args.api_key))
    series = args.kind == "usage" and args.customer
    path = f"/v1/customers/{urllib.parse.quote(args.customer, safe='')}/usage" if series else f"/v1/reports/{args.kind}"
    query = {k: v for k, v in {
        "from": args.from_, "to": args.to, "as_of": args.as_of if args.kind == "aging" else None,
        "meter": args.meter, "customer": None if series else args.customer,
        "currency": args.currency if args.kind == "revenue" else None, "group_by": args.group_by,
        "window": args.window if series else None, "limit": str(args.limit) if args.limit else None}.items()
        if v is not None}
    doc = _get(fetch, path, query)
    if args.format == "csv" and not series:
        sys.stdout.write(_get(fetch, path, {**query, "format": "csv"}, raw=True))
    elif args.format == "table":
        _table(doc, series)
    else:
        print(json.dumps(doc, indent=2))
    if args.out:
        data = chart(args.kind, doc, args.out, meter=args.meter, currency=args.currency, series=bool(series))
        Path(args.out).write_bytes(data)
        print(f"chart written to {args.out}", file=sys.stderr)
    return 0


def http_fetch(url: str, key: str) -> Fetch:
    def fetch(path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        req = urllib.request.Request(url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}", **headers})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status, resp.headers.get("content-type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("content-type", ""), exc.read()
    return fetch


def _get(fetch: Fetch, path: str, query: dict[str, str], raw: bool = False) -> Any:
    status, _, body = fetch(f"{path}?{urllib.parse.urlencode(query)}" if query else path, {})
    if status >= 300:
        raise SystemExit(f"meterbill report: GET {path} -> {status}: {body.decode('utf-8', 'replace')}")
    return body.decode("utf-8") if raw else json.loads(body)


def _table(doc: dict[str, Any], series: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if series:
        columns = ["meter", "start", "value", "events"]
        rows = [{"meter": m["meter"], **p} for m in doc["meters"] for p in m["points"]]
    else:
        columns, rows = doc["columns"], doc["rows"]
    table = Table(*columns, title=doc.get("report", "usage"))
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    Console().print(table)


def chart(kind: str, doc: dict[str, Any], out: str, *, meter: str | None = None, currency: str | None = None,
          series: bool = False) -> bytes:
    """The chart of a report (or of a customer's usage series) as PNG or SVG bytes."""
    from meterbill.domain.instants import parse_instant
    from meterbill.rendering import charts

    svg = Path(out).suffix.lower() == ".svg"
    if series:
        meters = [m for m in doc["meters"] if meter is None or m["meter"] == meter]
        if len(meters) > 1:
            raise SystemExit("meterbill report: the customer has usage of several meters: pick one with --meter "
                             f"({', '.join(m['meter'] for m in meters)})")
        points = [(parse_instant(p["start"], "start"), Decimal(p["value"])) for m in meters for p in m["points"]]
        code = meters[0]["meter"] if meters else (meter or "usage")
        title = f"{code} — {doc['customer']} ({doc['window']}, {doc['timezone']})"
        return charts.usage_chart_svg(points, title, code).encode() if svg else charts.usage_chart_png(points, title, code)
    rows = doc["rows"]
    group = doc["columns"][0]
    if kind == "usage":
        codes = sorted({r["meter"] for r in rows})
        labels = list(dict.fromkeys(str(r[group]) for r in rows))
        values = {code: [sum((Decimal(r["quantity"]) for r in rows if r["meter"] == code and str(r[group]) == label),
                             Decimal(0)) for label in labels] for code in codes}
        if group == "meter":
            labels, values = codes, {"quantity": [Decimal(r["quantity"]) for r in sorted(rows, key=lambda r: r["meter"])]}
        categories, bars, unit, title = labels, values, "quantity", f"Usage by {group}"
    else:
        currencies = sorted({r["currency"] for r in rows})
        cur = currency or (currencies[0] if len(currencies) == 1 else None)
        if cur is None:
            raise SystemExit(f"meterbill report: the report holds {', '.join(currencies)}: one currency per chart, "
                             "pick one with --currency")
        rows = [r for r in rows if r["currency"] == cur]
        if kind == "revenue":
            categories = [str(r[group]) for r in rows]
            bars = {n: [Decimal(r[n]) for r in rows] for n in ("billed", "collected", "outstanding")}
            title = f"Revenue by {group} ({cur})"
        else:
            categories = list(AGING_LABELS)
            bars = {str(r[group]): [Decimal(r[b]) for b in AGING] for r in rows}
            title = f"Receivables aging at {doc['as_of'][:10]} ({cur})"
        unit = cur
    return charts.bar_chart_svg(categories, bars, title, unit).encode() if svg else \
        charts.bar_chart_png(categories, bars, title, unit)
