"""Usage queries: aggregated series per meter, rolled up from buckets into hour/day windows."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.meters import BUCKET_SECONDS, BucketState, group_values, quantity
from meterbill.domain.periods import period_containing
from meterbill.ports import BillingStore, Clock
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField

WINDOWS = ("hour", "day")
MAX_WINDOWS = 24 * 93


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
        for bucket in self._store.query_buckets(customer_id, int(frm.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS,
                                                int(to.timestamp())):
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
