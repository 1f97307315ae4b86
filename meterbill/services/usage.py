"""Usage queries: aggregated series per meter, rolled up from buckets into hour/day windows, and
the stored buckets behind one invoice line."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.meters import BucketState, bucket_range, group_values, quantity, usage_of
from meterbill.domain.periods import period_containing
from meterbill.ports import BillingStore, Clock
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField, NotFound

WINDOWS = ("hour", "day")
MAX_WINDOWS = 24 * 93
MAX_BUCKETS_PER_PAGE = 1000  # a month of 15-minute buckets is ~2,976 per dimension group


class UsageService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock

    def series(self, customer_id: str, start: str | None, end: str | None, meter: str | None,
               window: str = "day", group: bool = False) -> dict[str, Any]:
        customer = self._catalog.get_customer(customer_id)
        if window not in WINDOWS:
            raise InvalidField("window", "must be 'hour' or 'day'")
        to = parse_instant(end, "to") if end else self._clock()
        frm = parse_instant(start, "from") if start else to - timedelta(days=30)
        if frm >= to:
            raise InvalidField("from", "must be before 'to'")
        tz = customer["timezone"]
        midnight = datetime(2000, 1, 1, tzinfo=ZoneInfo(tz))
        if (to - frm) / timedelta(hours=1 if window == "hour" else 24) > MAX_WINDOWS:
            raise InvalidField("from", f"the range holds more than {MAX_WINDOWS} {window} windows")
        meters = self._catalog.meters()
        if meter is not None and meter not in meters:
            raise InvalidField("meter", f"meter '{meter}' does not exist")
        cells: dict[tuple[str, str, str], list[BucketState]] = defaultdict(list)
        windows: dict[str, str] = {}
        started = parse_instant(customer["started_at"], "started_at")
        for bucket in self._store.query_buckets(customer_id, *bucket_range(frm, to, started)):  # as billed
            if meter is not None and bucket.meter != meter:
                continue
            p = period_containing(midnight, window, tz, from_ms(bucket.start_s * 1000))
            start_iso = iso(p.start)
            windows[start_iso] = iso(p.end)
            cells[(bucket.meter, start_iso, bucket.group if group else "")].append(bucket.state)
        series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (code, w_start, g), states in sorted(cells.items()):
            m = meters.get(code)
            if m is None:
                continue
            point: dict[str, Any] = {"start": w_start, "end": windows[w_start],
                                     "value": format(quantity(m.aggregation, states), "f"),
                                     "events": sum(s.count for s in states)}
            if group:
                point["group"] = group_values(m, g)
            series[code].append(point)
        return {"customer": customer_id, "from": iso(frm), "to": iso(to), "window": window,
                "timezone": tz,
                "meters": [{"meter": code, "aggregation": meters[code].aggregation, "points": pts}
                           for code, pts in series.items()]}

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


def _small_number(text: str) -> bool:
    """ASCII digits that int() takes (str.isdigit also admits '²' and other scripts' digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9
