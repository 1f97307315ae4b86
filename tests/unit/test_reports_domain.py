"""Report arithmetic (pure): aging buckets at their edges, what an invoice adds to revenue, CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meterbill.domain.errors import InvalidField
from meterbill.domain.reports import aging_bucket, check_group, open_at, revenue_amounts, to_csv

DUE = datetime(2026, 10, 31, tzinfo=timezone.utc)


@pytest.mark.parametrize("after,bucket", [
    (timedelta(days=-3), "current"), (timedelta(0), "current"), (timedelta(seconds=1), "d1_30"),
    (timedelta(days=30, hours=23), "d1_30"), (timedelta(days=31), "d31_60"), (timedelta(days=60), "d31_60"),
    (timedelta(days=61), "d61_90"), (timedelta(days=90, hours=5), "d61_90"), (timedelta(days=91), "d90_plus"),
    (timedelta(days=400), "d90_plus")])
def test_aging_buckets_by_whole_days_overdue(after: timedelta, bucket: str) -> None:
    assert aging_bucket(DUE, DUE + after) == bucket


def test_revenue_amounts_by_status() -> None:
    base = {"total": "120.00", "amount_due": "100.00", "credits_applied": "20.00"}
    assert revenue_amounts({**base, "status": "draft"}) is None
    assert revenue_amounts({**base, "status": "void"}) is None
    paid = revenue_amounts({**base, "status": "paid"})
    assert paid is not None and (paid["billed"], paid["collected"], paid["outstanding"]) == (
        Decimal("120.00"), Decimal("100.00"), Decimal(0))
    open_ = revenue_amounts({**base, "status": "finalizing", "credited_total": "5.00"})
    assert open_ is not None and (open_["outstanding"], open_["credited"]) == (Decimal("100.00"), Decimal("5.00"))


def test_open_at_follows_the_status_dates() -> None:
    parse = datetime.fromisoformat
    inv = {"status": "paid", "issued_at": "2026-10-01T00:00:00+00:00", "paid_at": "2026-10-10T00:00:00+00:00"}
    assert not open_at(inv, parse("2026-09-30T00:00:00+00:00"), parse)   # not issued yet
    assert open_at(inv, parse("2026-10-05T00:00:00+00:00"), parse)       # issued, not yet paid
    assert not open_at(inv, parse("2026-10-11T00:00:00+00:00"), parse)   # paid by then


def test_group_names() -> None:
    assert check_group("segment", ("period", "segment")) == "tag:segment"
    assert check_group("tag:region", ("period", "segment")) == "tag:region"
    with pytest.raises(InvalidField) as exc:
        check_group("tag:region", ("meter",))
    assert exc.value.field == "group_by"


def test_csv_quotes_and_keeps_exact_strings() -> None:
    report = {"columns": ["customer", "currency", "billed"],
              "rows": [{"customer": 'a,"b"\nc', "currency": "JPY", "billed": "1500"},
                       {"customer": "d", "currency": "EUR", "billed": "-0.10"}]}
    text = to_csv(report)
    assert text.splitlines()[0] == "customer,currency,billed"
    assert list(csv.DictReader(io.StringIO(text))) == report["rows"]
