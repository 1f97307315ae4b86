"""Reconciliation on moto: a clean stack reports clean; each injected discrepancy — a usage item
edited in the table, an invoice line changed, an invoice marked paid with no payment, a sync
record failed — is found with the ids to investigate; marked late usage is expected, not drift.
The clock is the fixed FakeClock: nothing depends on today's date."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from meterbill.adapters.dynamo_reconciliations import ReconciliationItems
from meterbill.adapters.dynamo_events import EventScanner
from meterbill.services.reconciliation import ReconciliationService
from tests.conftest import ev, standard_catalog, usage_cell

NOV = datetime.fromisoformat("2026-11-01T00:00:00Z")
Q10 = 1791626400   # 2026-10-10T10:00:00Z, the quarter-hour of ev()'s default timestamp


def send(container: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(json.dumps({"events": list(events)}), None)
    assert res.accepted == len(events), res


@pytest.fixture
def closed(container: Any, drain: Any) -> dict[str, dict[str, Any]]:
    """October invoiced (final, numbered) for acme and beta; their invoices by customer."""
    catalog = standard_catalog(container)
    catalog.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                  "billing_anchor": "2026-10-01T00:00:00Z"})
    send(container, ev("a1", tokens=700), ev("a2", tokens=500), ev("a3", ts="2026-10-20T08:05:00Z", tokens=1),
         ev("b1", customer="beta", tokens=40))
    drain()
    summary = container.billing.run(NOV)
    assert len(summary.invoices) == 2, summary.as_dict()
    return {c: container.billing_store.list_invoices(c, 10, None)[0][0] for c in ("acme", "beta")}


def drift(report: dict[str, Any], container: Any) -> list[dict[str, Any]]:
    found = container.reconciliation.view(report["id"])["findings"]
    return [f for f in found if f["severity"] != "info"]


def test_a_clean_stack_reports_clean(container: Any, closed: Any) -> None:
    report = container.reconciliation.run("2026-10")
    assert report["clean"] is True and report["drift"] == 0, container.reconciliation.view(report["id"])
    assert report["invoices_checked"] == 2 and report["customers_checked"] == 2
    assert report["recount"]["complete"] and report["recount"]["customers"] == ["acme", "beta"]
    assert report["recount"]["events_scanned"] == 4 and report["recount"]["read_units"] > 0
    assert container.reconciliation.view(report["id"])["findings"] == []
    # another month has nothing of October's
    assert container.reconciliation.run("2026-09")["invoices_checked"] == 0


@pytest.mark.parametrize(("attribute", "value", "problem", "rerated"), [("s", "1300", "bucket_differs", ["tokens"]),
                                                                         ("n", "4", "counted_twice", [])])
def test_a_usage_item_edited_in_the_table_is_found_with_its_keys_and_events(
        container: Any, closed: Any, ddb: Any, attribute: str, value: str, problem: str, rerated: list[str]) -> None:
    item, _ = usage_cell(ddb, "acme", Q10, "tokens")
    ddb.update_item(TableName="t-billing", Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET c.#q.#a = :v", ExpressionAttributeNames={"#q": "0", "#a": attribute},
                    ExpressionAttributeValues={":v": {"N": value}})
    report = container.reconciliation.run("2026-10", customer="acme")
    assert report["clean"] is False
    found = drift(report, container)
    raw = [f for f in found if f["kind"] == "raw_vs_aggregate"]
    assert len(raw) == 1, found
    assert raw[0]["problem"] == problem
    assert (raw[0]["customer"], raw[0]["meter"], raw[0]["bucket"]) == ("acme", "tokens", "2026-10-10T10:00:00Z")
    assert raw[0]["hour_key"] == f"{Q10:012d}|tokens#" == item["sk"]["S"]
    assert sorted(raw[0]["events"]) == ["a1", "a2"] and raw[0]["expected"].startswith("count 2, sum 1200")
    # the invoice billed the usage before the edit: re-rating the edited sum disagrees, no late marker
    # (the tokens meter sums: an edited event count changes no quantity)
    assert [(f["invoice"], f["meter"], f["problem"]) for f in found if f["kind"] == "aggregate_vs_invoice"] == \
        [(closed["acme"]["id"], m, "line_differs") for m in rerated]


def test_an_invoice_line_changed_is_found_with_the_invoice_and_line(container: Any, closed: Any, ddb: Any) -> None:
    inv = closed["beta"]
    index = next(i for i, ln in enumerate(inv["lines"]) if ln.get("meter") == "tokens")
    ddb.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                    UpdateExpression=f"SET #l[{index}].quantity = :q", ExpressionAttributeNames={"#l": "lines"},
                    ExpressionAttributeValues={":q": {"S": "4"}})
    report = container.reconciliation.run("2026-10")
    found = drift(report, container)
    assert [(f["kind"], f["problem"], f["customer"], f["invoice"], f["line"], f["expected"], f["found"])
            for f in found] == [("aggregate_vs_invoice", "line_differs", "beta", inv["id"], index,
                                 "quantity 40, amount 0.40", "quantity 4, amount 0.40")]
    # an amount changed breaks the invoice's arithmetic too
    ddb.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                    UpdateExpression=f"SET #l[{index}].amount = :a", ExpressionAttributeNames={"#l": "lines"},
                    ExpressionAttributeValues={":a": {"S": "4.00"}})
    kinds = {(f["kind"], f["problem"]) for f in drift(container.reconciliation.run("2026-10"), container)}
    assert kinds == {("aggregate_vs_invoice", "line_differs"), ("invoice_arithmetic", "subtotal_mismatch")}


def test_late_usage_marked_for_re_rating_is_expected_not_drift(container: Any, closed: Any, drain: Any) -> None:
    send(container, ev("late1", customer="beta", ts="2026-10-21T09:00:00Z", tokens=60))
    drain()
    assert container.billing_store.customer_items("late", "beta")
    report = container.reconciliation.run("2026-10")
    assert report["clean"] is True and report["expected_differences"] == 2
    notes = container.reconciliation.view(report["id"])["findings"]
    assert sorted((n["kind"], n["severity"], n["problem"], n["invoice"], n["meter"], n["expected"], n["found"])
                  for n in notes) == [
        ("aggregate_vs_invoice", "info", "late_usage_pending", closed["beta"]["id"], "calls",
         "quantity 2, amount 0.00", "quantity 1, amount 0.00"),
        ("aggregate_vs_invoice", "info", "late_usage_pending", closed["beta"]["id"], "tokens",
         "quantity 100, amount 1.00", "quantity 40, amount 0.40")]


def test_an_invoice_marked_paid_without_a_payment_is_found(container: Any, closed: Any, ddb: Any) -> None:
    container.billing.transition(closed["acme"]["id"], "mark-paid", reference="wire-2026-11-07")
    assert container.reconciliation.run("2026-10")["clean"] is True      # paid, with its reference
    inv = closed["beta"]
    ddb.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                    UpdateExpression="SET #s = :p", ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":p": {"S": "paid"}})
    found = drift(container.reconciliation.run("2026-10"), container)
    assert [(f["kind"], f["problem"], f["customer"], f["invoice"]) for f in found] == \
        [("invoice_vs_payment", "paid_without_payment", "beta", inv["id"])]


def test_a_failed_or_missing_sync_record_is_drift(container: Any, closed: Any, ddb: Any, clock: Any) -> None:
    store = container.billing_store
    service = ReconciliationService(store, ReconciliationItems(ddb, "t-billing"), EventScanner(ddb, "t-events"),
                                    container.catalog, container.billing, clock, ("stripe",))
    now = "2026-11-05T12:00:00Z"
    acme, beta = closed["acme"]["id"], closed["beta"]["id"]
    for inv, status in ((acme, "failed"), (beta, "synced")):
        store.claim_sync(inv, "stripe", "", {"integration": "stripe"}, "tok", now, "2026-11-05T12:05:00Z")
        store.finish_sync(inv, "stripe", "", "tok", status,
                          {"error": "customer has no email"} if status == "failed" else {"external_id": "in_x"}, now)
    report = service.run("2026-10")
    found = [f for f in service.view(report["id"])["findings"] if f["severity"] != "info"]
    assert [(f["kind"], f["problem"], f["invoice"], f["integration"]) for f in found] == \
        [("sync_drift", "sync_failed", acme, "stripe")]
    assert "customer has no email" in found[0]["message"]
    store.reopen_sync(acme, "stripe", "", now)   # re-driven: pending again, not synced yet
    found = service.view(service.run("2026-10")["id"])["findings"]
    assert [(f["problem"], f["severity"]) for f in found] == [("not_synced", "warning")]


def test_bad_input_names_the_field(container: Any) -> None:
    from meterbill.services.errors import InvalidField, NotFound

    for period in ("2026-13", "2026-1", "october"):
        with pytest.raises(InvalidField) as err:
            container.reconciliation.run(period)
        assert err.value.field == "period"
    with pytest.raises(InvalidField) as err:
        container.reconciliation.run("2026-10", sample=0)
    assert err.value.field == "sample"
    with pytest.raises(NotFound) as missing:
        container.reconciliation.run("2026-10", customer="nobody")
    assert missing.value.field == "customer"


def test_the_api_takes_a_request_and_pages_its_findings(container: Any, closed: Any, ddb: Any) -> None:
    from tests.integration.test_api import SECRETS, Api
    from aws_lambda_powertools.event_handler import HttpResolverLocal
    from meterbill.api.app import build_app

    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: container), container)
    resp = api.request("POST", "/v1/reconciliations", json_body={"period": "2026-10"})
    assert resp.status_code == 202, resp.text
    clean = resp.json()
    assert (clean["status"], clean["clean"], clean["drift"]) == ("finished", True, 0)   # no reconcile function here
    for inv in closed.values():   # two lines changed: two findings, paged one at a time
        ddb.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                        UpdateExpression="SET #l[0].quantity = :q", ExpressionAttributeNames={"#l": "lines"},
                        ExpressionAttributeValues={":q": {"S": "9"}})
    container.reconciliation._records._page_size = 1   # pages of one finding
    started = api.request("POST", "/v1/reconciliations", json_body={"period": "2026-10", "sample": 1}).json()
    first = api.ok("GET", f"/v1/reconciliations/{started['id']}")
    assert first["clean"] is False and first["drift"] == 2 and first["by_kind"]["aggregate_vs_invoice"] == 2
    assert len(first["recount"]["customers"]) == 1 and len(first["findings"]) == 1 and first["next_cursor"]
    second = api.ok("GET", f"/v1/reconciliations/{started['id']}", params={"cursor": first["next_cursor"]})
    assert second["next_cursor"] is None
    assert {f["invoice"] for f in first["findings"] + second["findings"]} == {i["id"] for i in closed.values()}
    # bad input names the field
    for body, field in (({"period": "2026-13"}, "period"), ({"period": "2026-10", "sample": 0}, "sample"),
                        ({"period": "2026-10", "customer": "nobody"}, "customer")):
        resp = api.request("POST", "/v1/reconciliations", json_body=body)
        assert resp.status_code in (400, 404, 422), resp.text
        assert field in resp.json()["error"]["field"], resp.text
    assert api.request("GET", "/v1/reconciliations/rc_nope").status_code == 404
    assert api.request("GET", f"/v1/reconciliations/{started['id']}", params={"cursor": "x"}).status_code == 400


def test_the_reconcile_function_may_do_what_a_reconciliation_does(container: Any, closed: Any, ddb: Any) -> None:
    from tests.integration.test_iam_actions import Recorder, granted

    recorder = Recorder(ddb)
    try:
        with recorder.recording():
            container.reconciliation.scheduled(datetime.fromisoformat("2026-11-06T06:30:00Z"))
    finally:
        ddb.meta.events.unregister("before-parameter-build.dynamodb", recorder._record)
    assert ("Scan", "EventsTable") in recorder.calls and ("PutItem", "BillingTable") in recorder.calls
    missing = recorder.calls - granted("ReconcileFunction")
    assert not missing, f"ReconcileFunction lacks {sorted(missing)}"


def test_a_requested_reconciliation_runs_in_the_reconcile_function(container: Any, closed: Any, ddb: Any,
                                                                    clock: Any) -> None:
    launched: list[str] = []
    service = ReconciliationService(container.billing_store, ReconciliationItems(ddb, "t-billing"),
                                    EventScanner(ddb, "t-events"), container.catalog, container.billing, clock, (),
                                    launch=launched.append)
    queued = service.request("2026-10", customer="acme")
    assert queued["status"] == "queued" and launched == [queued["id"]]
    done = service.run_requested(queued["id"])
    assert (done["id"], done["status"], done["clean"], done["recount"]["customers"]) == \
        (queued["id"], "finished", True, ["acme"])
    assert service.run_requested(queued["id"])["finished_at"] == done["finished_at"]   # a retried invoke: no rerun


def test_the_cli_reconciles_and_exits_1_on_drift(container: Any, closed: Any, clock: Any, ddb: Any,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import meterbill.bootstrap
    from meterbill import cli

    real = meterbill.bootstrap.bootstrap
    monkeypatch.setenv("METERBILL_EVENTS_TABLE", "t-events")
    monkeypatch.setenv("METERBILL_BILLING_TABLE", "t-billing")
    monkeypatch.setattr(meterbill.bootstrap, "bootstrap", lambda: real(clock=clock))
    assert cli.main(["reconcile", "--period", "2026-10", "--aws"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["clean"] is True and "clean: no differences" in err and "invoices checked" in err
    inv = closed["acme"]
    ddb.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                    UpdateExpression="SET amount_due = :a", ExpressionAttributeValues={":a": {"S": "0.00"}})
    assert cli.main(["reconcile", "--period", "2026-10", "--customer", "acme", "--aws"]) == 1
    out, err = capsys.readouterr()
    (finding,) = json.loads(out)["findings"]
    assert (finding["kind"], finding["problem"], finding["invoice"]) == \
        ("invoice_arithmetic", "amount_due_mismatch", inv["id"])
    assert "drift: 1 difference(s) to investigate" in err
    assert cli.main(["reconcile", "--period", "2026-13", "--aws"]) == 1
    assert "period" in capsys.readouterr().err
