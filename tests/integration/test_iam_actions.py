"""The IAM statements in template.yaml allow what each function's code really does.

Every DynamoDB request a function makes on moto is recorded as IAM sees it: a transaction is not an
IAM action, each of its parts is checked as PutItem / UpdateItem / DeleteItem / ConditionCheckItem
(DynamoDB developer guide, "Using IAM with DynamoDB transactions"); a query on an index needs the
index ARN. Each recorded (action, resource) must be allowed by that function's own statements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from infra.template import load_template
from meterbill.api.app import build_app
from tests.conftest import ev, standard_catalog
from tests.integration.test_api import SECRETS, Api

TABLES = {"t-events": "EventsTable", "t-billing": "BillingTable"}
PARTS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def _resource(table: str, index: str | None = None) -> str:
    return TABLES[table] + ("/index" if index else "")


def requests_as_iam(operation: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    if operation == "TransactWriteItems":
        return {(PARTS[kind], _resource(op["TableName"])) for item in params["TransactItems"] for kind, op in item.items()}
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return {(operation, _resource(t)) for t in params["RequestItems"]}
    return {(operation, _resource(params["TableName"], params.get("IndexName")))}


def granted(function: str) -> set[tuple[str, str]]:
    """(action, resource) pairs of a function's inline statements; resources named as above."""
    out = set()
    for policy in load_template()["Resources"][function]["Properties"]["Policies"]:
        for st in policy["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for res in resources:
                if "Fn::GetAtt" in res and res["Fn::GetAtt"][1] == "Arn":
                    name = res["Fn::GetAtt"][0]
                elif "Fn::Sub" in res and res["Fn::Sub"].endswith(".Arn}/index/*"):
                    name = res["Fn::Sub"][2:].split(".")[0] + "/index"
                elif res == {"Fn::GetAtt": ["CloseQueue", "Arn"]}:
                    out |= {(a, "CloseQueue") for a in st["Action"]}
                    continue
                else:
                    continue  # stream ARNs: read through the streams client, not recorded here
                out |= {(a.removeprefix("dynamodb:"), name) for a in st["Action"]}
    return out


class Recorder:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: set[tuple[str, str]] = set()
        self.on = False
        client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.on:
            self.calls |= requests_as_iam(model.name, params)

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False


@pytest.fixture
def recorder(ddb: Any) -> Iterator[Recorder]:
    rec = Recorder(ddb)
    yield rec
    ddb.meta.events.unregister("before-parameter-build.dynamodb", rec._record)


def body(*events: dict[str, Any]) -> str:
    return json.dumps({"events": list(events)})


SQS_AS_IAM = {"SendMessageBatch": "sqs:SendMessage", "SendMessage": "sqs:SendMessage",
              "ChangeMessageVisibility": "sqs:ChangeMessageVisibility"}


@pytest.fixture
def sqs_recorder(container: Any, recorder: Recorder) -> Iterator[Recorder]:
    """The close queue's sends and visibility changes, recorded as IAM sees them, with the DynamoDB calls."""
    client = container.billing_runs._queue._c

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if recorder.on and model.name in SQS_AS_IAM:
            recorder.calls.add((SQS_AS_IAM[model.name], "CloseQueue"))

    client.meta.events.register("before-parameter-build.sqs", record)
    yield recorder
    client.meta.events.unregister("before-parameter-build.sqs", record)


def test_the_dispatcher_and_the_close_worker_may_do_what_a_billing_run_does(
        container: Any, drain: Any, clock: Any, close_worker: Any, sqs_recorder: Recorder) -> None:
    standard_catalog(container)
    container.ingest.ingest(body(ev(1, tokens=500)), None)
    drain()
    container.billing_runs.scheduled(datetime.fromisoformat("2026-11-01T00:00:00+00:00"))
    close_worker.drain()
    container.ingest.ingest(body(ev("late", ts="2026-10-31T23:00:00Z", tokens=700)), None)
    drain()
    assert container.billing_store.customer_items("late", "acme")
    clock.advance(days=30)
    with sqs_recorder.recording():
        run = container.billing_runs.scheduled(datetime.fromisoformat("2026-12-01T00:00:00+00:00"))
    dispatcher = set(sqs_recorder.calls)
    missing = dispatcher - granted("ClosePeriodsFunction")
    assert not missing, f"ClosePeriodsFunction lacks {sorted(missing)}"
    assert ("sqs:SendMessage", "CloseQueue") in dispatcher
    sqs_recorder.calls.clear()
    with sqs_recorder.recording():  # settles the late marker (deletes it in the invoice's transaction)
        close_worker.drain()
    assert container.billing_runs.view(run["id"])["status"] == "finished"
    assert not container.billing_store.customer_items("late", "acme")
    assert ("DeleteItem", "BillingTable") in sqs_recorder.calls
    missing = sqs_recorder.calls - granted("CloseWorkerFunction")
    assert not missing, f"CloseWorkerFunction lacks {sorted(missing)}"


def test_a_close_worker_may_put_back_a_customer_waiting_for_usage(container: Any, close_worker: Any,
                                                                   sqs_recorder: Recorder) -> None:
    standard_catalog(container)
    container.ingest.ingest(body(ev(1, tokens=500)), None)   # in the stream, not aggregated
    run = container.billing_runs.request(datetime.fromisoformat("2026-11-01T00:00:00+00:00"))
    with sqs_recorder.recording():
        close_worker.poll_once()   # the dispatch: aggregation is behind
        close_worker.poll_once()   # acme: waiting, put back
    assert container.billing_runs.view(run["id"])["waiting"] == 1
    missing = sqs_recorder.calls - granted("CloseWorkerFunction")
    assert not missing, f"CloseWorkerFunction lacks {sorted(missing)}"
    assert ("sqs:ChangeMessageVisibility", "CloseQueue") in sqs_recorder.calls


def test_the_aggregator_may_do_what_aggregating_does(container: Any, drain: Any, recorder: Recorder) -> None:
    standard_catalog(container)
    container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00+00:00"))
    container.ingest.ingest(body(ev(1, tokens=5), ev(2, ts="2026-10-31T23:00:00Z", tokens=1e200),
                                 ev(3, customer="later", tokens=1)), None)
    with recorder.recording():
        drain()
    missing = recorder.calls - granted("AggregatorFunction")
    assert not missing, f"AggregatorFunction lacks {sorted(missing)}"


def test_the_api_may_do_what_its_routes_do(container: Any, drain: Any, clock: Any, recorder: Recorder) -> None:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: container), container)
    with recorder.recording():
        api.ok("PUT", "/v1/meters/tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens"})
        api.ok("PUT", "/v1/plans/pro", {"currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
            {"meter": "tokens", "model": "per_unit", "unit_amount": "0.01"}]})
        api.ok("PUT", "/v1/customers/acme", {"name": "Acme", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                             "billing_anchor": "2026-10-01T00:00:00Z", "progressive_threshold": "1000.00"})
        api.ok("PUT", "/v1/customers/acme/discounts/d1", {"type": "percentage", "percentage": "10"})
        api.ok("PUT", "/v1/customers/acme/credit-grants/g1", {"amount": "5.00"})
        api.ok("POST", "/v1/events", {"events": [ev(1, tokens=500), ev(2, customer="newco", tokens=1)]}, key="ingest")
    drain()
    with recorder.recording():
        run = api.billing_run({"as_of": "2026-11-01T00:00:00Z"})
        assert len(run["invoices_created"]) == 1
        invoice = api.ok("GET", f"/v1/invoices/{run['invoices_created'][0]}")
        api.ok("POST", f"/v1/invoices/{invoice['id']}/mark-paid", {})
        resp = api.post("/v1/credit-notes", {"invoice": invoice["id"], "amount": "1.00"})
        assert resp.status_code == 201, resp.text
        api.ok("DELETE", "/v1/customers/acme/discounts/d1")
        api.ok("GET", "/v1/customers/acme/usage")
        api.ok("GET", "/v1/customers/acme/upcoming-invoice")
        for path in ("/v1/reports/usage", "/v1/reports/revenue?group_by=segment", "/v1/reports/aging?customer=acme"):
            assert "rows" in api.ok("GET", path), path
        keys = api.ok("GET", "/v1/api-keys")["data"]
        api.ok("DELETE", f"/v1/api-keys/{keys[0]['id']}")
        api.ok("GET", "/v1/health", key=None)
    missing = recorder.calls - granted("ApiFunction")
    assert not missing, f"ApiFunction lacks {sorted(missing)}"
    assert "BatchWriteItem" not in {action for action, _ in recorder.calls}


def test_the_dunning_function_and_the_api_may_do_what_collections_do(container: Any, drain: Any, clock: Any,
                                                                     recorder: Recorder) -> None:
    from datetime import timedelta

    from functions.dunning import process

    standard_catalog(container)
    container.ingest.ingest(body(ev(1, tokens=500)), None)
    drain()
    [inv_id] = container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00+00:00")).invoices
    with recorder.recording():   # a payment (API), then ticks: overdue, a step, collections
        container.payments.record(inv_id, {"amount": "1.00", "reference": "WIRE-1"})
        container.payments.list(inv_id)
    api_calls = set(recorder.calls)
    recorder.calls.clear()
    due = datetime.fromisoformat(container.billing_store.get_invoice(inv_id)["due_at"].replace("Z", "+00:00"))
    with recorder.recording():
        for days in (1, 20):
            clock.now = due + timedelta(days=days)
            process({"scheduled_time": clock.now.isoformat()}, container.dunning)
    assert container.billing_store.get_invoice(inv_id)["collections_at"]
    missing = recorder.calls - granted("DunningFunction")
    assert not missing, f"DunningFunction lacks {sorted(missing)}"
    missing = api_calls - granted("ApiFunction")
    assert not missing, f"ApiFunction lacks {sorted(missing)}"
