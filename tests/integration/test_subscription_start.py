"""Issue 8, hardening, through the HTTP API on moto: events from before a customer's start are
flagged (``before_start``), and a start far back needs ``"backdate": true``.

Plan 'pro' (tests/integration/test_api.py): 49.00 base fee, monthly. Customer 'acme' monthly from
2026-10-01; the clock says 2026-11-05."""

# ruff: noqa: F811  (the API fixtures are imported from test_api and used as parameters)
from __future__ import annotations

from typing import Any

from tests.conftest import ev
from tests.integration.test_api import ACME, Api, api, catalog, error, events_body  # noqa: F401


def test_events_before_the_customer_started_are_flagged(catalog: Api) -> None:
    catalog.ok("PUT", "/v1/customers/late", {"name": "Late", "plan": "pro", "started_at": "2026-10-10T10:07:00Z"})
    body = events_body(ev("b1", customer="late", ts="2026-10-09T23:59:00Z", tokens=1),
                       ev("b2", customer="late", ts="2026-10-10T10:01:00Z", tokens=1),  # its bucket is billed
                       ev("b3", customer="late", ts="2026-10-11T00:00:00Z", tokens=1),
                       ev("b4", customer="nobody", ts="2026-10-09T00:00:00Z", tokens=1))
    resp = catalog.post("/v1/events", body, key="ingest")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["accepted"] == 4 and out["before_start"] == ["b1"] and out["pending"] == ["b4"]


def test_a_start_far_in_the_past_needs_an_explicit_backdate(catalog: Api, clock: Any) -> None:
    old = {"name": "Old", "plan": "pro", "started_at": "2020-01-01T00:00:00Z"}
    err = error(catalog.put("/v1/customers/old", old), 400)
    assert err["field"] == "started_at" and "backdate" in err["message"]
    assert catalog.get("/v1/customers/old").status_code == 404
    assert error(catalog.put("/v1/customers/old", old | {"started_at": "1999-01-01T00:00:00Z", "backdate": True}),
                 400)["field"] == "started_at"  # never before 2000 (no event can be)
    assert error(catalog.put("/v1/customers/old", old | {"backdate": 5}), 400)["field"] == "backdate"
    doc = catalog.ok("PUT", "/v1/customers/old", old | {"backdate": True})
    assert doc["started_at"] == "2020-01-01T00:00:00Z" and "backdate" not in doc
    # unchanged on a later replace: no confirmation needed again
    clock.advance(days=200)
    catalog.ok("PUT", "/v1/customers/acme", ACME)
    catalog.ok("PUT", "/v1/customers/old", old)
    # 92 days back is fine without it
    recent = {"name": "Recent", "plan": "pro", "started_at": "2027-03-01T00:00:00Z"}  # clock: 2027-05-24
    catalog.ok("PUT", "/v1/customers/recent", recent)


def test_pending_usage_far_back_needs_an_explicit_start(catalog: Api, drain: Any) -> None:
    body = events_body(ev("p1", customer="newco", ts="2026-06-01T00:00:00Z", tokens=1))
    assert catalog.post("/v1/events", body, key="ingest").json()["pending"] == ["p1"]
    drain()
    err = error(catalog.put("/v1/customers/newco", {"name": "NewCo", "plan": "pro"}), 400)
    assert err["field"] == "started_at" and "2026-06-01" in err["message"]
    doc = catalog.ok("PUT", "/v1/customers/newco", {"name": "NewCo", "plan": "pro", "backdate": True})
    assert doc["started_at"] == "2026-06-01T00:00:00Z"
