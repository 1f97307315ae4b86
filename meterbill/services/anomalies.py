"""Anomaly scans (issue 11): per customer and meter, the hourly usage read from the stored buckets
(never the raw events) → ``domain.anomalies.detect`` → each anomaly stored once under its key →
one alert for each new one (``ports.AlertSink``; sent again later if it did not go out)."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meterbill.domain.anomalies import DEFAULT, HOUR, KINDS, Anomaly, DetectorConfig, detect, floor_hour
from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.meters import BucketState, quantity
from meterbill.ports import AlertSink, AnomalyStore, Clock, item_start
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField

log = logging.getLogger(__name__)
EVENT_TYPE = "anomaly.detected"   # an outbound-webhook event type (domain/webhooks.py)
SCHEDULED_HOURS = 3            # each scheduled scan looks at the last complete hours (overlap: harmless)
MAX_SCAN_DAYS = 366            # a request or CLI call scans at most a year (a new deployment's history)
CUSTOMERS_PER_PAGE = 100       # an all-customer scan over the API: one page of customers per request
ALERTS_PER_REDRIVE = 100
ALERT_WITHIN_S = 24 * HOUR    # an anomaly found in history that ended before this is stored, not alerted
LISTED = 100                   # anomalies named in a scan's answer (the counts cover all)


def anomaly_id(customer: str, meter: str, kind: str, start_s: int) -> str:
    return "an_" + hashlib.sha256(f"{customer}\x1f{meter}\x1f{kind}\x1f{start_s}".encode()).hexdigest()[:24]


def _n(value: Decimal) -> str:
    return format(value.normalize() if value == value.to_integral_value() else value, "f")


class AnomalyService:
    def __init__(self, store: AnomalyStore, catalog: CatalogService, clock: Clock, sink: AlertSink | None,
                 config: DetectorConfig = DEFAULT) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._sink = sink
        self._config = config

    # -- scans -------------------------------------------------------------------------------
    def scheduled(self, at: datetime | None = None, time_left: Callable[[], float] | None = None) -> dict[str, Any]:
        """The scheduled scan: the last SCHEDULED_HOURS complete hours of every customer, after
        sending the alerts still pending from earlier scans."""
        redriven = self.redrive_alerts()
        end = floor_hour(int((at or self._clock()).timestamp()))
        result = self.scan_all(end - SCHEDULED_HOURS * HOUR, end, time_left)
        return {**result, "alerts_redriven": redriven}

    def scan_all(self, start_s: int, end_s: int, time_left: Callable[[], float] | None = None,
                 progress: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
        """Every customer, page after page (until ``time_left()`` runs under 30 s: ``next_cursor``)."""
        total: dict[str, Any] = {}
        cursor: str | None = None
        while True:
            page = self._scan_page(start_s, end_s, None, cursor, CUSTOMERS_PER_PAGE)
            total = _added(total, page)
            if progress is not None:
                progress(total)
            cursor = page["next_cursor"]
            if not cursor or (time_left is not None and time_left() < 30):
                return {**total, "next_cursor": cursor}

    def history(self, start: str | None, end: str | None, customer: str | None,
                progress: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
        """An on-demand scan in this process (CLI): one customer, or every customer to the end."""
        if customer is not None:
            return self.request(start, end, customer)
        return self.scan_all(*self._range(start, end), progress=progress)

    def request(self, start: str | None, end: str | None, customer: str | None, cursor: str | None = None
                ) -> dict[str, Any]:
        """An on-demand scan over history (API, CLI). One customer: the whole range at once; every
        customer: one page of CUSTOMERS_PER_PAGE customers, continued with ``next_cursor``."""
        start_s, end_s = self._range(start, end)
        if customer is not None:
            self._catalog.get_customer(customer)        # NotFound naming the customer
            if cursor is not None:
                raise InvalidField("cursor", "is only for a scan of every customer (no customer named)")
        return self._scan_page(start_s, end_s, customer, cursor, CUSTOMERS_PER_PAGE)

    def _range(self, start: str | None, end: str | None) -> tuple[int, int]:
        now = self._clock()
        to = parse_instant(end, "to") if end else now
        frm = parse_instant(start, "from") if start else to - timedelta(days=1)
        if to > now:
            raise InvalidField("to", "must not be in the future")
        if frm >= to:
            raise InvalidField("from", "must be before 'to'")
        if to - frm > timedelta(days=MAX_SCAN_DAYS):
            raise InvalidField("from", f"the range is longer than {MAX_SCAN_DAYS} days")
        return floor_hour(int(frm.timestamp())), floor_hour(int(to.timestamp()))

    def _scan_page(self, start_s: int, end_s: int, customer: str | None, cursor: str | None, limit: int
                   ) -> dict[str, Any]:
        if customer is not None:
            ids, next_cursor = [customer], None
        else:
            rows, next_cursor = self._store.list_customers(limit, cursor)
            ids = [r["id"] for r in rows]
        result: dict[str, Any] = {"from": iso(from_ms(start_s * 1000)), "to": iso(from_ms(end_s * 1000)),
                                  "customers": 0, "series": 0, "usage_items_read": 0, "found": 0, "created": 0,
                                  "extended": 0, "alerts_sent": 0, "alerts_failed": 0, "anomalies": []}
        meters = self._catalog.meters()
        for cid in ids:
            self._scan_customer(cid, start_s, end_s, meters, result)
        result["next_cursor"] = next_cursor
        return result

    def _scan_customer(self, customer: str, start_s: int, end_s: int, meters: Mapping[str, Any],
                       result: dict[str, Any]) -> None:
        read_from = start_s - self._config.history_s()
        buckets = self._store.query_buckets(customer, read_from, end_s)
        result["customers"] += 1
        result["usage_items_read"] += len({(b.meter, b.group, item_start(b.start_s)) for b in buckets})
        if not buckets:
            return
        hours: dict[str, dict[int, list[BucketState]]] = defaultdict(lambda: defaultdict(list))
        for b in buckets:
            hours[b.meter][item_start(b.start_s)].append(b.state)
        stored = [_anomaly(d) for d in self._store.anomalies_of(customer, read_from)]
        for code, by_hour in sorted(hours.items()):
            meter = meters.get(code)
            if meter is None:
                continue
            series = {h: quantity(meter.aggregation, states) for h, states in by_hour.items()}
            result["series"] += 1
            for a in detect(series, min(series), start_s, end_s, customer, code, self._config, stored):
                self._keep(a, result)

    def _keep(self, a: Anomaly, result: dict[str, Any]) -> None:
        now = iso(self._clock())
        doc = {**self.view(a), "start_s": a.start_s, "end_s": a.end_s, "detected_at": now, "updated_at": now}
        due = self._sink is not None and a.end_s > int(self._clock().timestamp()) - ALERT_WITHIN_S
        outcome = self._store.put_anomaly(_stored(doc, a), alert_due=due)
        result["found"] += 1
        if outcome != "unchanged":
            result[outcome] += 1
        if len(result["anomalies"]) < LISTED:
            result["anomalies"].append({"id": doc["id"], "kind": a.kind, "customer": a.customer, "meter": a.meter,
                                        "start": doc["start"], "outcome": outcome})
        if outcome == "created" and due:
            sent = self._alert(doc)
            result["alerts_sent" if sent else "alerts_failed"] += 1

    # -- alerts ------------------------------------------------------------------------------
    def _alert(self, doc: Mapping[str, Any]) -> bool:
        """The one seam to the outbound-webhook path: an anomaly's alert, sent at least once."""
        assert self._sink is not None
        payload = {k: v for k, v in doc.items() if k not in ("start_s", "end_s", "alert", "updated_at")}
        try:
            self._sink.emit(EVENT_TYPE, payload, str(doc["id"]))
        except Exception:   # any sink failure: the alert stays pending, redriven by the next scan
            log.warning("anomaly alert not sent; it stays pending", extra={"anomaly": doc["id"]}, exc_info=True)
            return False
        self._store.alert_sent(str(doc["customer"]), int(doc["start_s"]), str(doc["meter"]), str(doc["kind"]),
                               iso(self._clock()))
        return True

    def redrive_alerts(self) -> int:
        """Send the alerts still pending (their sink failed before); how many went out."""
        if self._sink is None:
            return 0
        return sum(1 for doc in self._store.pending_alerts(ALERTS_PER_REDRIVE) if self._alert(_public(doc)))

    # -- reading -----------------------------------------------------------------------------
    def list(self, customer: str | None, meter: str | None, kind: str | None, since: str | None,
             limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        if kind is not None and kind not in KINDS:
            raise InvalidField("kind", f"must be one of: {', '.join(KINDS)}")
        since_dt = parse_instant(since, "since") if since else datetime.fromtimestamp(0, tz=self._clock().tzinfo)
        rows, next_cursor = self._store.list_anomalies(customer, meter, kind, int(since_dt.timestamp()),
                                                       iso(since_dt), limit, cursor)
        return [{k: v for k, v in _public(r).items() if k not in ("start_s", "end_s")} for r in rows], next_cursor

    @staticmethod
    def view(a: Anomaly) -> dict[str, Any]:
        return {"id": anomaly_id(a.customer, a.meter, a.kind, a.start_s), "customer": a.customer, "meter": a.meter,
                "kind": a.kind, "start": iso(from_ms(a.start_s * 1000)), "end": iso(from_ms(a.end_s * 1000)),
                "expected": _n(a.expected), "expected_low": _n(a.expected_low), "expected_high": _n(a.expected_high),
                "observed": _n(a.observed), "score": _n(a.score), "seasonality": a.seasonality}


def _stored(doc: Mapping[str, Any], a: Anomaly) -> dict[str, Any]:
    """Numbers stored as exact DynamoDB numbers."""
    return {**doc, "expected": a.expected, "expected_low": a.expected_low, "expected_high": a.expected_high,
            "observed": a.observed, "score": a.score}


def _public(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (_n(v) if isinstance(v, Decimal) and k not in ("start_s", "end_s") else v) for k, v in doc.items()}
    out["start_s"], out["end_s"] = int(doc["start_s"]), int(doc["end_s"])
    return out


def _anomaly(doc: Mapping[str, Any]) -> Anomaly:
    return Anomaly(str(doc["customer"]), str(doc["meter"]), str(doc["kind"]), int(doc["start_s"]), int(doc["end_s"]),
                   Decimal(doc["expected"]), Decimal(doc["expected_low"]), Decimal(doc["expected_high"]),
                   Decimal(doc["observed"]), Decimal(doc["score"]), str(doc.get("seasonality", "weekly")))


def _added(total: Mapping[str, Any], page: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(page) if not total else dict(total)
    if total:
        for k, v in page.items():
            if isinstance(v, int) and k in out:
                out[k] += v
        out["anomalies"] = [*total["anomalies"], *page["anomalies"]][:LISTED]
    return out
