"""The customer portal and spend budgets through the real app (in-process moto, tables from the
template): signed links (expiry, tampering, another customer's data), the pages a customer sees,
budget alerts sent once, and the spend check answered from the running bill the aggregator keeps.
Times come from the FakeClock (2026-11-05T12:00Z), never from today's date."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from tests.conftest import FakeClock, ev, standard_catalog
from tests.integration.test_api import SECRETS, Api

SECRET = "portal-test-secret-0123456789abcdef"


class Alerts:
    """The alert seam (ports.AlertSink), recording what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str]] = []

    def emit(self, event_type: str, payload: Any, dedupe_key: str) -> None:
        self.sent.append((event_type, dict(payload), dedupe_key))


@pytest.fixture
def alerts() -> Alerts:
    return Alerts()


@pytest.fixture
def pc(ddb: Any, clock: FakeClock, close_queue_url: str, alerts: Alerts) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0, close_queue_url=close_queue_url,
                              close_wait_retry_s=0, portal_secret=SECRET, portal_base_url="https://bill.example"),
                     client=ddb, clock=clock, cache_ttl_s=0, alerts=alerts)


@pytest.fixture
def api(pc: Any) -> Api:
    for scope, secret in SECRETS.items():
        pc.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: pc), pc)


@pytest.fixture
def drain(pc: Any) -> Any:
    from meterbill.local.stack import StreamPoller

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        pc.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    return StreamPoller(None, "t-events", handler).drain  # type: ignore[arg-type]


def send(api: Api, *events: dict[str, Any]) -> None:
    resp = api.post("/v1/events", {"events": list(events)}, key="ingest")
    assert resp.status_code == 200, resp.text


@pytest.fixture
def world(pc: Any, api: Api, drain: Any) -> dict[str, Any]:
    """acme: October usage invoiced, November usage so far; globex: its own invoice."""
    standard_catalog(pc)
    pc.catalog.put_customer("globex", {"name": "Globex Secret Corp", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                       "billing_anchor": "2026-10-01T00:00:00Z"})
    send(api, ev("o1", tokens=300, ts="2026-10-10T10:00:00Z"), ev("g1", customer="globex", tokens=7777,
                                                                   ts="2026-10-11T10:00:00Z"))
    drain()
    pc.billing.run(as_of=pc.clock().replace(day=1, hour=0))
    pc.billing.number_invoices()
    send(api, ev("n1", tokens=1200, ts="2026-11-02T10:00:00Z"), ev("n2", tokens=300, ts="2026-11-04T09:00:00Z"))
    drain()
    invoices = {i["customer_id"]: i for i in pc.billing_store.list_invoices(None, 10, None)[0]}
    return {"acme": invoices["acme"], "globex": invoices["globex"]}


def link(api: Api, customer: str = "acme", days: int | None = None) -> str:
    resp = api.post(f"/v1/customers/{customer}/portal-links", {} if days is None else {"days": days})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["url"] == "https://bill.example" + body["path"]
    return body["path"]


def page(api: Api, path: str, status: int = 200) -> str:
    resp = api.get(path, key=None)
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["cache-control"] == "private, no-store"
    return resp.text


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)))


def test_the_portal_shows_this_customers_usage_bill_invoices_and_credits(api: Api, world: dict[str, Any],
                                                                          pc: Any) -> None:
    pc.accounts.put_grant("acme", "prepaid", {"amount": "25.00"})
    html = page(api, link(api))
    seen = text_of(html)
    upcoming = pc.billing.upcoming("acme")
    # November so far: tokens 1,500 (graduated: 1000 × 0.01 + 500 × 0.005 = 12.50), calls 2, base fee 49
    assert "tokens : 1,500" in seen and "calls : 2" in seen
    assert upcoming["total"] == "61.50"
    assert "61.50 USD" in seen
    assert world["acme"]["number"] in seen and world["acme"]["total"] + " USD" in seen
    assert "25.00 USD" in seen                     # credits left
    assert html.count("<svg") == 2                 # a chart per meter, inline
    # nothing to run, nothing fetched (XML namespace names in the SVG are names, not requests)
    assert "<script" not in html and "<link" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    assert "Globex" not in html and world["globex"]["number"] not in html


def test_invoice_documents_are_scoped_to_the_links_customer(api: Api, world: dict[str, Any]) -> None:
    path = link(api)
    own, other = world["acme"]["id"], world["globex"]["id"]
    assert world["acme"]["number"] in page(api, f"{path}/invoices/{own}.html")
    pdf = api.get(f"{path}/invoices/{own}.pdf", key=None)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    for suffix in ("html", "pdf"):
        body = page(api, f"{path}/invoices/{other}.{suffix}", 404)
        assert "Globex" not in body and other not in body
    assert "Globex" not in page(api, f"{path}/invoices/in_missing.html", 404)


def test_tampered_foreign_and_expired_links_get_the_plain_error_page(api: Api, world: dict[str, Any],
                                                                    pc: Any, clock: FakeClock) -> None:
    from meterbill.domain import portal_tokens

    path = link(api, days=1)
    token = unquote(path.rsplit("/", 1)[1])
    version, customer, expires, mac = token.split(".")
    globex = portal_tokens.sign(SECRET.encode(), "globex", int(expires)).split(".")[1]
    forged = [f"{version}.{globex}.{expires}.{mac}",                          # another customer
              f"{version}.{customer}.{int(expires) + 86400}.{mac}",          # a later expiry
              portal_tokens.sign(b"another-deployment-secret-xyz", "acme", int(expires)),
              token[:-4], "nonsense"]
    for bad in forged:
        body = page(api, f"/portal/{bad}", 403)
        assert "This link is not valid" in body
        assert "acme" not in body.lower() and "Globex" not in body and "61.50" not in body
        page(api, f"/portal/{bad}/invoices/{world['acme']['id']}.html", 403)
    clock.advance(days=1)
    body = page(api, path, 410)
    assert "expired" in body and "Acme" not in body
    page(api, f"{path}/invoices/{world['acme']['id']}.pdf", 410)


def test_portal_links_need_an_admin_key_and_an_existing_customer(api: Api, world: dict[str, Any]) -> None:
    assert api.post("/v1/customers/acme/portal-links", {}, key=None).status_code == 401
    assert api.post("/v1/customers/acme/portal-links", {}, key="read").status_code == 403
    assert api.post("/v1/customers/nobody/portal-links", {}).status_code == 404
    resp = api.post("/v1/customers/acme/portal-links", {"days": 400})
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "days"


def test_budget_alerts_are_sent_once_per_threshold_and_period(api: Api, world: dict[str, Any], pc: Any,
                                                              drain: Any, alerts: Alerts) -> None:
    # running bill 61.50 of a 100.00 budget: 50 % crossed as soon as the budget is set
    body = api.ok("PUT", "/v1/customers/acme/budget", {"amount": "100.00", "thresholds": [50, 80, 100]})
    assert body["running"]["spent"] == "61.50"
    assert [(a[0], a[1]["threshold"]) for a in alerts.sent] == [("budget.threshold_crossed", 50)]
    assert alerts.sent[0][2] == "budget:acme:2026-11-01T00:00:00Z:50"
    # 2,000 more tokens: +10.00 -> 71.50, nothing new; 6,000 more: +30.00 -> 101.50, 80 and 100 once
    send(api, ev("n3", tokens=2000, ts="2026-11-05T08:00:00Z"))
    drain()
    assert len(alerts.sent) == 1
    send(api, ev("n4", tokens=6000, ts="2026-11-05T09:00:00Z"))
    drain()
    assert [a[1]["threshold"] for a in alerts.sent] == [50, 80, 100]
    assert alerts.sent[-1][1]["spent"] == "101.50"
    # further usage, a refresh by hand, setting the same budget again: nothing is sent twice
    send(api, ev("n5", tokens=10, ts="2026-11-05T10:00:00Z"))
    drain()
    pc.budgets.refresh({"acme"})
    api.ok("PUT", "/v1/customers/acme/budget", {"amount": "100.00"})
    assert [a[1]["threshold"] for a in alerts.sent] == [50, 80, 100]
    view = api.ok("GET", "/v1/customers/acme/budget")
    assert [(a["threshold"], a["status"]) for a in view["alerts"]] == [(50, "sent"), (80, "sent"), (100, "sent")]


def test_a_customer_without_a_budget_gets_no_running_bill_refresh(api: Api, world: dict[str, Any], pc: Any,
                                                                  drain: Any, monkeypatch: Any) -> None:
    calls: list[str] = []
    real = pc.billing.upcoming
    monkeypatch.setattr(pc.billing, "upcoming", lambda c: (calls.append(c), real(c))[1])
    send(api, ev("n6", tokens=5, ts="2026-11-05T10:00:00Z"))
    drain()
    assert calls == []       # aggregation of an unbudgeted customer costs one BatchGetItem, no rating


def test_spend_check_follows_aggregation_without_re_rating_per_call(api: Api, world: dict[str, Any], pc: Any,
                                                                    drain: Any, monkeypatch: Any) -> None:
    api.ok("PUT", "/v1/customers/acme/budget", {"amount": "80.00"})
    calls: list[str] = []
    real = pc.billing.upcoming
    monkeypatch.setattr(pc.billing, "upcoming", lambda c: (calls.append(c), real(c))[1])
    check = api.ok("GET", "/v1/customers/acme/spend-check", params={"amount": "18.50"})
    assert (check["spent"], check["projected"], check["remaining"], check["within_budget"]) == \
        ("61.50", "80.00", "18.50", True)
    assert not api.ok("GET", "/v1/customers/acme/spend-check", params={"amount": "18.51"})["within_budget"]
    assert calls == []                         # answered from the stored running bill
    send(api, ev("n7", tokens=1000, ts="2026-11-05T11:00:00Z"))   # +5.00
    drain()
    assert calls == ["acme"]                   # re-rated once, by the aggregator's batch
    check = api.ok("GET", "/v1/customers/acme/spend-check", params={"amount": "13.50"})
    assert check["spent"] == "66.50" == pc.billing.upcoming("acme")["total"]
    assert check["within_budget"] and check["budget"] == "80.00"
    bad = api.get("/v1/customers/acme/spend-check", params={"amount": "1.001"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "amount"
    bad = api.get("/v1/customers/acme/spend-check", params={"amount": "-1"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "amount"
    assert api.get("/v1/customers/nobody/spend-check").status_code == 404


def test_spend_check_without_a_budget_is_always_within(api: Api, world: dict[str, Any]) -> None:
    check = api.ok("GET", "/v1/customers/globex/spend-check", params={"amount": "1000000"})
    assert check["within_budget"] is True and check["budget"] is None


def test_the_customer_sets_a_budget_in_the_portal_with_the_forms_token_value(api: Api, world: dict[str, Any],
                                                                           pc: Any, alerts: Alerts) -> None:
    path = link(api)
    html = page(api, path)
    value = re.search(r'name="form" value="([^"]+)"', html).group(1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # without the form value (a page elsewhere posting to the portal): refused, nothing stored
    resp = api.request("POST", f"{path}/budget", key=None, content="amount=70&thresholds=50", headers=form)
    assert resp.status_code == 400 and "Budget not saved" in resp.text
    assert api.get("/v1/customers/acme/budget").status_code == 404
    resp = api.request("POST", f"{path}/budget", key=None, headers=form,
                       content=f"form={value}&amount=70.00&thresholds=90%2C+50")
    assert resp.status_code == 200 and "Budget saved" in resp.text and "70.00 USD" in text_of(resp.text)
    view = api.ok("GET", "/v1/customers/acme/budget")
    assert (view["amount"], view["thresholds"], view["set_by"]) == ("70.00", [50, 90], "portal")
    assert [a[1]["threshold"] for a in alerts.sent] == [50]     # 61.50 of 70.00
    resp = api.request("POST", f"{path}/budget", key=None, headers=form, content=f"form={value}&amount=abc")
    assert resp.status_code == 400 and "amount" in resp.text
    # a form value of another link of the same customer is refused too
    other = link(api, days=2)
    resp = api.request("POST", f"{other}/budget", key=None, headers=form, content=f"form={value}&amount=90")
    assert resp.status_code == 400


def test_the_api_and_the_aggregator_may_do_what_portal_and_budgets_do(api: Api, world: dict[str, Any], ddb: Any,
                                                                     drain: Any) -> None:
    from tests.integration.test_iam_actions import Recorder, granted

    recorder = Recorder(ddb)
    try:
        with recorder.recording():
            api.ok("PUT", "/v1/customers/acme/budget", {"amount": "62.00", "thresholds": [50, 100]})
            api.ok("GET", "/v1/customers/acme/budget")
            api.ok("GET", "/v1/customers/acme/spend-check", params={"amount": "1"})
            path = link(api)
            page(api, path)
            page(api, f"{path}/invoices/{world['acme']['id']}.html")
        missing = recorder.calls - granted("ApiFunction")
        assert not missing, f"ApiFunction lacks {sorted(missing)}"
        send(api, ev("n9", tokens=200, ts="2026-11-05T11:00:00Z"))   # crosses 100 %: an alert from the aggregator
        recorder.calls.clear()
        with recorder.recording():
            drain()
        assert ("UpdateItem", "BillingTable") in recorder.calls    # the alert marked sent
        missing = recorder.calls - granted("AggregatorFunction")
        assert not missing, f"AggregatorFunction lacks {sorted(missing)}"
    finally:
        ddb.meta.events.unregister("before-parameter-build.dynamodb", recorder._record)
