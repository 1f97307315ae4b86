"""Anomaly detection quality (precision, recall) and speed of the pure detector.

Synthetic: seeded hourly series with daily and weekly seasonality and noise, with spikes, drops
and silences injected at known windows. Real: NAB's nyc_taxi (bench/data/README.md) with NAB's
labelled windows. Precision = detected anomalies overlapping a labelled window of their family
(increase: spike; decrease: drop, silent) / all detected; recall = labelled windows overlapped by
a detection of their family / all labelled windows."""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from bench import report
from meterbill.domain.anomalies import HOUR, WEEK, Anomaly, detect

SEED = 20261201
SERIES = 60
WEEKS = 8                     # 4 weeks of history, then 4 weeks scanned
START = int(datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp())   # a Monday
FAMILY = {"spike": "up", "drop": "down", "silent": "down"}
DATA = Path(__file__).parent / "data" / "nyc_taxi.csv"
NYC_TAXI_WINDOWS = [  # NAB labels/combined_windows.json, "realKnownCause/nyc_taxi.csv"
    ("2014-10-30 15:30:00", "2014-11-03 22:30:00"), ("2014-11-25 12:00:00", "2014-11-29 19:00:00"),
    ("2014-12-23 11:30:00", "2014-12-27 18:30:00"), ("2014-12-29 21:30:00", "2015-01-03 04:30:00"),
    ("2015-01-24 20:30:00", "2015-01-29 03:30:00")]

Label = tuple[int, int, str]   # start, end, family


def synthetic(rng: random.Random, base: float) -> tuple[dict[int, Decimal], list[Label]]:
    """One meter's hourly counts: a business-day curve, quieter weekends, noise; then 2 spikes,
    1 drop and 1 silence injected in the last 4 weeks (at daytime hours: when the meter reports)."""
    values = {}
    for h in range(WEEKS * 168):
        hour_of_day, day = h % 24, (h // 24) % 7
        daily = 0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour_of_day - 6) / 16))
        weekly = 0.45 if day >= 5 else 1.0
        mean = base * daily * weekly * rng.lognormvariate(0, 0.08)
        values[h] = max(0.0, rng.gauss(mean, math.sqrt(mean)))   # Poisson-like on top
    labels: list[Label] = []
    taken: set[int] = set()

    def place(length: int) -> int:
        while True:
            day = rng.randrange(28, WEEKS * 7 - 1)
            h = day * 24 + rng.randrange(9, 17 - length + 1)
            if not taken & set(range(h - 24, h + length + 24)):
                taken.update(range(h, h + length))
                return h
    def inject(lengths: tuple[int, int], factors: tuple[float, float] | None, family: str) -> None:
        length = rng.randint(*lengths)
        h = place(length)
        factor = rng.uniform(*factors) if factors else 0.0    # no factor: silence
        for i in range(length):
            values[h + i] *= factor
        labels.append((h, h + length, family))
    for _ in range(2):
        inject((1, 3), (2.5, 5.0), "up")
    inject((2, 5), (0.1, 0.35), "down")
    inject((3, 8), None, "down")
    series = {START + h * HOUR: Decimal(round(v)) for h, v in values.items() if round(v) > 0}
    return series, [(START + a * HOUR, START + b * HOUR, f) for a, b, f in labels]


def score(found: Sequence[Anomaly], labels: Sequence[Label]) -> tuple[int, int, int, int]:
    """(true detections, all detections, labels found, all labels)."""
    def hits(a: Anomaly, label: Label) -> bool:
        return FAMILY[a.kind] == label[2] and a.start_s < label[1] and label[0] < a.end_s
    good = sum(1 for a in found if any(hits(a, lb) for lb in labels))
    seen = sum(1 for lb in labels if any(hits(a, lb) for a in found))
    return good, len(found), seen, len(labels)


def run() -> None:
    rng = random.Random(SEED)
    totals = [0, 0, 0, 0]
    scan_start, scan_end = START + 4 * WEEK, START + WEEKS * WEEK
    elapsed = 0.0
    hours = 0
    for i in range(SERIES):
        base = rng.choice([20.0, 200.0, 2000.0, 20000.0])
        series, labels = synthetic(rng, base)
        t0 = time.perf_counter()
        found = detect(series, START, scan_start, scan_end, f"c{i}", "api_calls")
        elapsed += time.perf_counter() - t0
        hours += (scan_end - scan_start) // HOUR
        totals = [t + s for t, s in zip(totals, score(found, labels))]
    good, detected, seen, labelled = totals
    note = f"{SERIES} seeded series (seed {SEED}), {labelled} injected anomalies, {detected} detected"
    report("anomaly_precision", good / detected if detected else 1.0, "ratio", note=note)
    report("anomaly_recall", seen / labelled, "ratio", note=note)
    report("anomaly_detect_hour", elapsed / hours * 1e6, "µs", note="pure detector, per scanned hour")
    _nyc_taxi()
    _scan_cost()


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def _nyc_taxi() -> None:
    series: dict[int, Decimal] = {}
    with DATA.open(newline="") as f:
        for row in csv.DictReader(f):
            t = _epoch(row["timestamp"])
            series[t - t % HOUR] = series.get(t - t % HOUR, Decimal(0)) + Decimal(row["value"])
    first, last = min(series), max(series) + HOUR
    found = detect(series, first, first + 4 * WEEK, last, "nyc", "passengers")
    windows = [(_epoch(a), _epoch(b)) for a, b in NYC_TAXI_WINDOWS]
    inside = sum(1 for a in found if any(a.start_s < e and s < a.end_s for s, e in windows))
    seen = sum(1 for s, e in windows if any(a.start_s < e and s < a.end_s for a in found))
    weeks = (last - first - 4 * WEEK) / WEEK
    note = f"NAB realKnownCause/nyc_taxi.csv hourly, {len(found)} detected, {len(windows)} labelled windows"
    report("anomaly_nyc_taxi_precision", inside / len(found) if found else 1.0, "ratio", note=note)
    report("anomaly_nyc_taxi_recall", seen / len(windows), "ratio", note=note)
    report("anomaly_nyc_taxi_false_alarms", (len(found) - inside) / weeks, "per week")


def _scan_cost() -> None:
    """What the hourly scan reads per customer: in-process moto, one customer with METERS meters
    and the detector's whole look-back of hourly usage items (5 weeks), one scheduled scan metered
    by DynamoDB's read rules (a Query page's item sizes summed, rounded up to 4 KB; every read
    counted as strongly consistent: an upper bound)."""
    import boto3
    from moto import mock_aws

    from bench.wcu import item_size
    from infra.template import create_tables
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.domain.anomalies import DEFAULT
    from meterbill.domain.meters import BucketState
    from meterbill.local.moto_server import patch_moto
    from meterbill.ports import UsageItem

    meters = ("api_calls", "tokens", "gpu_seconds")
    now = datetime(2026, 11, 5, 12, 10, tzinfo=timezone.utc)
    patch_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "b-events", "BillingTable": "b-billing"})
        c = bootstrap(Settings(events_table="b-events", billing_table="b-billing"), client=client,
                      clock=lambda: now, cache_ttl_s=0)
        for code in meters:
            c.catalog.put_meter(code, {"event_type": code, "aggregation": "sum", "property": "value"})
        c.catalog.put_plan("pro", {"currency": "USD", "interval": "month", "base_fee": "10.00", "charges": []})
        c.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "started_at": "2026-09-01T00:00:00Z",
                                        "billing_anchor": "2026-09-01T00:00:00Z"})
        end = int(now.timestamp()) // HOUR * HOUR
        first = end - DEFAULT.history_s() - 3 * HOUR
        rng = random.Random(SEED)
        for code in meters:
            for h in range(first, end, HOUR):
                state = BucketState(count=4, sum=Decimal(rng.randint(50, 150)))
                c.billing_store.put_usage_item(UsageItem(("acme", h, code, ""), {h: state}, version=1), None)
        metered = {"rcu": 0.0, "calls": 0}

        def meter(parsed: dict, model: object, **_: object) -> None:
            metered["calls"] += 1
            if getattr(model, "name", "") == "Query":
                metered["rcu"] += max(1, math.ceil(sum(item_size(i) for i in parsed.get("Items", [])) / 4096))
            elif getattr(model, "name", "") == "GetItem":
                metered["rcu"] += max(1, math.ceil(item_size(parsed.get("Item", {})) / 4096))
        client.meta.events.register("after-call.dynamodb", meter)
        t0 = time.perf_counter()
        result = c.anomalies.scheduled(now)
        elapsed = time.perf_counter() - t0
    note = (f"{len(meters)} meters x {DEFAULT.history_s() // HOUR + 3} hourly items each, {metered['calls']} calls, "
            f"{result['usage_items_read']} usage items read")
    report("anomaly_scan_customer_rcu", metered["rcu"], "RCU", note=note)
    report("anomaly_scan_customer_moto", elapsed * 1000, "ms", note="in-process moto, not AWS latency")
