"""The lean ingest function (functions/ingest.py, API Gateway's POST /v1/events) answers an API
Gateway v2 event exactly as the routed API does: same status, headers and body, same metrics, for
valid, partial, invalid, malformed, oversized, unauthenticated and forbidden requests. It may do
only what its IAM statements allow, and its cold start loads none of what ingest does not need."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from infra.template import create_tables, load_template
from meterbill.api import events as events_http
from meterbill.api.app import build_app
from meterbill.api.events import build_ingest_app
from meterbill.bootstrap import bootstrap
from meterbill.config import Settings
from tests.conftest import ev, standard_catalog
from tests.integration.test_iam_actions import Recorder, granted
from tests.integration.test_lambda_handlers import ctx, recorded

REPO = Path(__file__).resolve().parents[2]
KEYS = {"ingest": "mbtest_lean_ingest_0123456789abcdef", "read": "mbtest_lean_read_0123456789abcdef"}


def keyed(container: Any) -> Any:
    for scope, secret in KEYS.items():
        container.keys.create([scope], name=f"lean {scope}", secret=secret)
    standard_catalog(container)
    return container


@pytest.fixture
def twin(ddb: Any, clock: Any, container: Any) -> Any:
    """A second, independent deployment (its own tables, same clock, keys and catalog): the
    routed API and the lean function each get the same requests on a fresh state."""
    create_tables(ddb, {"EventsTable": "t2-events", "BillingTable": "t2-billing"})
    return bootstrap(Settings(events_table="t2-events", billing_table="t2-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0), client=ddb, clock=clock, cache_ttl_s=0)


def post(body: str | bytes, *, key: str | None = "ingest", content_type: str = "application/json",
         query: str = "") -> dict[str, Any]:
    event = recorded("apigw_post_events.json")
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /v1/events"
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body
    event["headers"]["content-type"] = content_type
    event["headers"]["content-length"] = str(len(body))
    if key is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = f"Bearer {KEYS[key]}"
    if query:
        event["rawQueryString"] = query
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    return event


def batch(*evts: dict[str, Any]) -> str:
    return json.dumps({"events": list(evts)})


CASES: dict[str, tuple[dict[str, Any], int]] = {
    "valid": (post(batch(ev(1, tokens=5), ev(2, tokens=7))), 200),
    "duplicate": (post(batch(ev(1, tokens=5))), 200),
    "pending customer": (post(batch(ev(3, customer="newco", tokens=1))), 200),
    "base64 body": (post(batch(ev(4, tokens=1)).encode()), 200),
    "cloudevents": (post(json.dumps({"specversion": "1.0", "id": "ce-1", "source": "/x", "type": "api.call",
                                     "subject": "acme", "time": "2026-10-10T10:00:00Z", "data": {"tokens": 2}}),
                         content_type="application/cloudevents+json"), 200),
    "partial": (post(batch(ev(5, tokens=1), ev(6, ts="2027-01-01T00:00:00Z", tokens=1))), 207),
    "id conflict": (post(batch(ev(1, tokens=999))), 422),
    "all invalid": (post(batch(ev(7, ts="yesterday"), {"id": "8"})), 422),
    "not JSON": (post("{\"events\": ["), 400),
    "no events field": (post("{\"evnts\": []}"), 400),
    "too deep": (post("[" * 40 + "]" * 40), 400),
    "not UTF-8": (post(b"\xff\xfe{}"), 400),
    "bad query parameter": (post(batch(ev(9, tokens=1)), query="cursor=%21%21"), 400),
    "unauthenticated": (post(batch(ev(10, tokens=1)), key=None), 401),
    "read key": (post(batch(ev(11, tokens=1)), key="read"), 403),
    "too large": (post(" " * (5 * 1024 * 1024 + 1)), 413),
    "media type": (post(batch(ev(12, tokens=1)), content_type="text/xml"), 415),
}


class Metrics:
    """What the shared answer records, per request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, float]] = []
        monkeypatch.setattr(events_http.metrics, "add_metric",
                            lambda name, unit, value: self.seen.append((name, value)))

    def take(self) -> list[tuple[str, float]]:
        out, self.seen = self.seen, []
        return out


def test_the_lean_function_answers_exactly_as_the_routed_api(container: Any, twin: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    routed = build_app(APIGatewayHttpResolver, lambda: container)
    lean = build_ingest_app(APIGatewayHttpResolver, lambda: twin)
    keyed(container), keyed(twin)
    metrics = Metrics(monkeypatch)
    for name, (event, status) in CASES.items():
        want = routed.resolve(copy.deepcopy(event), ctx("meterbill-api"))
        want_metrics = metrics.take()
        got = lean.resolve(copy.deepcopy(event), ctx("meterbill-ingest"))
        assert want["statusCode"] == status, (name, want)
        assert got == want, name
        assert metrics.take() == want_metrics, name
    assert container.events_store.get("1") == twin.events_store.get("1") != None  # noqa: E711
    assert container.events_store.get("6") is None and twin.events_store.get("10") is None


@pytest.fixture
def lean_wired(container: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """functions/ingest.py's ingest_container() answers the test container."""
    import meterbill.bootstrap as bootstrap_mod

    keyed(container)
    monkeypatch.setattr(bootstrap_mod, "ingest_bootstrap", lambda *a, **k: container)
    bootstrap_mod.ingest_container.cache_clear()
    yield container
    bootstrap_mod.ingest_container.cache_clear()


def test_the_ingest_handler_takes_a_recorded_request(lean_wired: Any) -> None:
    from functions import ingest

    event = recorded("apigw_post_events.json")
    event["headers"]["authorization"] = f"Bearer {KEYS['ingest']}"
    resp = ingest.handler(event, ctx("meterbill-ingest"))
    assert resp["statusCode"] == 200, resp
    assert json.loads(resp["body"])["accepted"] == 3
    assert lean_wired.events_store.get("lambda-2")["properties"] == {"tokens": 700}


def test_the_ingest_function_may_do_what_ingesting_does(container: Any, ddb: Any, clock: Any) -> None:
    lean = build_ingest_app(APIGatewayHttpResolver, lambda: container)
    keyed(container)
    recorder = Recorder(ddb)
    with recorder.recording():
        for name in ("valid", "duplicate", "pending customer", "id conflict", "unauthenticated"):
            lean.resolve(copy.deepcopy(CASES[name][0]), ctx("meterbill-ingest"))
        clock.advance(hours=2)  # the key's last use is written again, a customer re-read
        lean.resolve(post(batch(ev(20, tokens=1), ev(21, customer="later", tokens=1))), ctx("meterbill-ingest"))
    assert {"PutItem", "UpdateItem", "BatchGetItem", "Query"} <= {action for action, _ in recorder.calls}
    missing = recorder.calls - granted("IngestFunction")
    assert not missing, f"IngestFunction lacks {sorted(missing)}"


def test_api_gateway_sends_post_events_to_the_ingest_function() -> None:
    resources = load_template()["Resources"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]): name
              for name in ("ApiFunction", "IngestFunction")
              for e in resources[name]["Properties"]["Events"].values() if e["Type"] == "HttpApi"}
    assert routes == {("ANY", "/{proxy+}"): "ApiFunction", ("POST", "/v1/events"): "IngestFunction"}


def test_the_ingest_cold_start_loads_only_what_ingest_needs() -> None:
    """Imports the handler and builds its container in a fresh interpreter, as Lambda's first
    invocation does (no AWS call: the client is only built)."""
    code = ("import sys, functions.ingest as f; from meterbill.bootstrap import ingest_container; ingest_container(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'jinja2', 'reportlab') "
            "or m in ('meterbill.api.routes', 'meterbill.api.app', 'meterbill.api.schemas', 'meterbill.api.openapi', "
            "'meterbill.services.billing', 'meterbill.rendering', 'meterbill.adapters.dynamo_stream')))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "METERBILL_EVENTS_TABLE": "e", "METERBILL_BILLING_TABLE": "b",
           "METERBILL_DYNAMODB_ENDPOINT": "http://127.0.0.1:9", "POWERTOOLS_METRICS_NAMESPACE": "meterbill"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
