"""Usage queries: aggregated series per meter, rolled up from buckets into hour/day/week/month windows
aligned in the customer's timezone (with the previous period for comparison), and
the stored buckets behind one invoice line."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.meters import BucketState, Meter, bucket_range, group_values, quantity, usage_of
from meterbill.domain.periods import Period, boundary, period_containing
from meterbill.ports import BillingStore, Clock
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField, NotFound

WINDOWS = ("hour", "day", "week", "month")
MAX_WINDOWS = 24 * 93
MAX_BUCKETS_PER_PAGE = 1000  # a month of 15-minute buckets is ~2,976 per dimension group
SHORTEST = {"hour": timedelta(hours=1), "day": timedelta(hours=23), "week": timedelta(days=7) - timedelta(hours=1),
            "month": timedelta(days=28) - timedelta(hours=1)}  # a window's shortest length (DST, February)
# Windows start at local midnight (hour: the local hour), weeks on Monday, months on the 1st.
ANCHORS = {"hour": (2000, 1, 1), "day": (2000, 1, 1), "week": (2000, 1, 3), "month": (2000, 1, 1)}
ALL_DIMENSIONS = frozenset({"true", "1", "yes", "on"})   # group_by=true: every dimension (the original flag)
NO_DIMENSION = frozenset({"false", "0", "no", "off", ""})
COMPARE = ("previous",)


class UsageService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock

    def series(self, customer_id: str, start: str | None, end: str | None, meter: str | None,
               window: str = "day", group: bool | str | None = False, compare: str | None = None) -> dict[str, Any]:
        """Usage per meter in ``window``s aligned in the customer's timezone (DST-correct: a local
        day is 23 or 25 hours around a change). ``group``: False, True (every dimension) or
        dimension names ("region" or "region,model"). ``compare="previous"``: also the same number
        of windows just before, and per meter (and group) the totals and their change."""
        customer = self._catalog.get_customer(customer_id)
        if window not in WINDOWS:
            raise InvalidField("window", "must be one of: " + ", ".join(WINDOWS))
        if compare is not None and compare not in COMPARE:
            raise InvalidField("compare", "must be 'previous'")
        to = parse_instant(end, "to") if end else self._clock()
        frm = parse_instant(start, "from") if start else to - timedelta(days=30)
        if frm >= to:
            raise InvalidField("from", "must be before 'to'")
        if (to - frm) / SHORTEST[window] > MAX_WINDOWS:
            raise InvalidField("from", f"the range holds more than {MAX_WINDOWS} {window} windows")
        meters = self._catalog.meters()
        if meter is not None and meter not in meters:
            raise InvalidField("meter", f"meter '{meter}' does not exist")
        dims = _dimensions(group, meters[meter] if meter else None)
        tz = customer["timezone"]
        current = self._windows(customer, frm, to, meter, window, dims, meters)
        out = {"customer": customer_id, "from": iso(frm), "to": iso(to), "window": window, "timezone": tz,
               "meters": current}
        if compare:
            n = len(windows_between(frm, to, window, tz))
            p_frm, p_to = boundary(frm, window, tz, -n), boundary(to, window, tz, -n)
            previous = self._windows(customer, p_frm, p_to, meter, window, dims, meters)
            out["previous"] = {"from": iso(p_frm), "to": iso(p_to), "meters": previous}
            out["change"] = changes(current, previous)
        return out

    def _windows(self, customer: dict[str, Any], frm: datetime, to: datetime, meter: str | None, window: str,
                 dims: tuple[str, ...] | None, meters: dict[str, Meter]) -> list[dict[str, Any]]:
        tz = customer["timezone"]
        anchor = datetime(*ANCHORS[window], tzinfo=ZoneInfo(tz))
        cells: dict[tuple[str, str, str], list[BucketState]] = defaultdict(list)
        windows: dict[str, str] = {}
        started = parse_instant(customer["started_at"], "started_at")
        for bucket in self._store.query_buckets(customer["id"], *bucket_range(frm, to, started)):  # as billed
            if meter is not None and bucket.meter != meter:
                continue
            m = meters.get(bucket.meter)
            if m is None:
                continue
            p = period_containing(anchor, window, tz, from_ms(bucket.start_s * 1000))
            start_iso = iso(p.start)
            windows[start_iso] = iso(p.end)
            cells[(bucket.meter, start_iso, _group_key(m, bucket.group, dims))].append(bucket.state)
        series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        totals: dict[tuple[str, str], list[BucketState]] = defaultdict(list)
        for (code, w_start, g), states in sorted(cells.items()):
            m = meters[code]
            point: dict[str, Any] = {"start": w_start, "end": windows[w_start],
                                     "value": format(quantity(m.aggregation, states), "f"),
                                     "events": sum(s.count for s in states)}
            if dims is not None:
                point["group"] = json.loads(g)
            series[code].append(point)
            totals[(code, g)].extend(states)
        out = []
        for code, pts in series.items():
            agg = meters[code].aggregation
            entry: dict[str, Any] = {"meter": code, "aggregation": agg, "points": pts}
            groups = sorted(g for c, g in totals if c == code)
            if dims is None:
                entry["total"] = format(quantity(agg, totals[(code, "")]), "f")
            else:
                entry["totals"] = [{"group": json.loads(g), "value": format(quantity(agg, totals[(code, g)]), "f")}
                                   for g in groups]
            out.append(entry)
        return out

    def line_usage(self, invoice_id: str, index: str, limit: int = 500, cursor: str | None = None) -> dict[str, Any]:
        """The stored 15-minute buckets behind invoice line ``index`` (0-based), a page at a time, and
        their total computed by the rating's own roll-up (``usage_of``) over the line's whole period.
        ``total`` equals the line's ``quantity`` unless usage arrived after the invoice was final."""
        if not 1 <= limit <= MAX_BUCKETS_PER_PAGE:
            raise InvalidField("limit", f"must be 1 to {MAX_BUCKETS_PER_PAGE}")
        if cursor is not None and not _small_number(cursor):
            raise InvalidField("cursor", "is not a cursor returned by this listing")
        offset = int(cursor or 0)
        if not _small_number(index):
            raise InvalidField("index", "must be a line number: 0, 1, 2, …")
        invoice = self._store.get_invoice(invoice_id)
        if invoice is None:
            raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
        lines = invoice.get("lines") or []
        i = int(index)
        if i >= len(lines):
            raise NotFound(f"invoice '{invoice_id}' has {len(lines)} lines: index {i} is not one of "
                           f"0..{len(lines) - 1}", field="index")
        line = lines[i]
        code = line.get("meter")
        if not code:
            raise NotFound(f"invoice line {i} ({line.get('type')}: {line.get('description')}) is not metered: "
                           "no usage behind it", field="index")
        meter = self._catalog.meters().get(code)
        if meter is None:
            raise NotFound(f"meter '{code}' of invoice line {i} does not exist", field="index")
        start, end = parse_instant(line["period"]["start"], "start"), parse_instant(line["period"]["end"], "end")
        customer = self._store.get_customer(invoice["customer_id"])
        started = parse_instant(customer["started_at"], "started_at") if customer else start
        # the same bucket range as BillingService.rate_period
        buckets = [b for b in self._store.query_buckets(invoice["customer_id"], *bucket_range(start, end, started))
                   if b.meter == code]
        usage = usage_of(meter, [(b.start_s, b.group, b.state) for b in buckets], detail=False)
        page = buckets[offset:offset + limit]
        return {"invoice": invoice_id, "index": i, "meter": code, "aggregation": meter.aggregation,
                "group_by": list(meter.group_by), "unit": line.get("unit"), "period": dict(line["period"]),
                "quantity": line.get("quantity"), "total": format(usage.quantity, "f"), "events": usage.events,
                "buckets": [{"start": iso(from_ms(b.start_s * 1000)), "group": group_values(meter, b.group),
                             "value": format(quantity(meter.aggregation, [b.state]), "f"), "events": b.state.count}
                            for b in page],
                "next_cursor": str(offset + limit) if offset + limit < len(buckets) else None}


def _dimensions(group: bool | str | None, meter: Meter | None) -> tuple[str, ...] | None:
    """None: one series per meter; () : every dimension group as stored; names: merged by them."""
    if group is None or group is False:
        return None
    if group is True:
        return ()
    text = group.strip()
    if text.lower() in ALL_DIMENSIONS:
        return ()
    if text.lower() in NO_DIMENSION:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",")))
    for name in names:
        if not name or len(name) > 128:
            raise InvalidField("group_by", "must be true, false or dimension names separated by commas")
        if meter is not None and name not in meter.group_by:
            raise InvalidField("group_by", f"meter '{meter.code}' has no dimension '{name}' (it groups by: "
                                           f"{', '.join(meter.group_by) or 'nothing'})")
    return names


def _group_key(meter: Meter, stored: str, dims: tuple[str, ...] | None) -> str:
    if dims is None:
        return ""
    values = group_values(meter, stored)
    if dims:
        values = {d: values.get(d) for d in dims}
    return json.dumps(values, sort_keys=True)


def windows_between(frm: datetime, to: datetime, window: str, tz: str) -> list[Period]:
    """The ``window``s (aligned in ``tz``) that [frm, to) touches, in order."""
    anchor = datetime(*ANCHORS[window], tzinfo=ZoneInfo(tz))
    out = [period_containing(anchor, window, tz, frm)]
    while out[-1].end < to:
        out.append(period_containing(anchor, window, tz, out[-1].end))
    return out


def changes(current: list[dict[str, Any]], previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per meter (and group): the total now, the previous period's, the difference and the
    percentage (null when the previous total is 0)."""
    def flat(series: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
        out = {}
        for entry in series:
            if "total" in entry:
                out[(entry["meter"], "")] = Decimal(entry["total"])
            for t in entry.get("totals", ()):
                out[(entry["meter"], json.dumps(t["group"], sort_keys=True))] = Decimal(t["value"])
        return out

    now, before = flat(current), flat(previous)
    rows = []
    for code, g in sorted(set(now) | set(before)):
        a, b = now.get((code, g), Decimal(0)), before.get((code, g), Decimal(0))
        row: dict[str, Any] = {"meter": code, "current": format(a, "f"), "previous": format(b, "f"),
                               "change": format(a - b, "f"),
                               "change_pct": format(((a - b) * 100 / b).quantize(Decimal("0.01")), "f") if b else None}
        if g:
            row["group"] = json.loads(g)
        rows.append(row)
    return rows


def _small_number(text: str) -> bool:
    """ASCII digits that int() takes (str.isdigit also admits '²' and other scripts' digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9
