"""Issue 8, HTTP layer: every bad input is a clear 4xx in the one error envelope, and nothing is
half-written. Through the real local entry (ThreadedHttpResolver: the adapter uvicorn serves) and,
where API Gateway's event shape matters, through the Lambda handler."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from meterbill.api.app import build_app
from meterbill.api.asgi import ThreadedHttpResolver
from tests.conftest import ev
from tests.integration.test_api import ACME, METER_CALLS, METER_TOKENS, PLAN_PRO, SECRETS, Api, error
from tests.integration.test_asgi import lambda_api  # noqa: F401  # a fixture: functions/api.py imported afresh
from tests.integration.test_lambda_handlers import priced, wired  # noqa: F401  # fixtures


@pytest.fixture
def local(container: Any) -> Iterator[Api]:
    """The app as `meterbill run` serves it, with the standard catalog."""
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    app = build_app(partial(ThreadedHttpResolver, workers=2), lambda: container)  # type: ignore[arg-type]
    api = Api(app)
    api.ok("PUT", "/v1/meters/tokens", METER_TOKENS)
    api.ok("PUT", "/v1/meters/calls", METER_CALLS)
    api.ok("PUT", "/v1/plans/pro", PLAN_PRO)
    api.ok("PUT", "/v1/customers/acme", ACME)
    yield api
    app.close(5)


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


# -- pagination cursors ----------------------------------------------------------------------
FORGED = [[1, 2], "x", 5, None, {}, {"pk": {"S": "x"}},
          {"pk": {"S": "METER#a"}, "sk": {"S": "METER"}, "gsi1pk": {"S": "METERS"}, "gsi1sk": {"N": "1"}},
          {"pk": {"S": "METER#a"}, "sk": {"S": "METER"}, "gsi1pk": {"S": "METERS"}, "gsi1sk": {"S": ""}}]


@pytest.mark.parametrize("value", FORGED, ids=lambda v: json.dumps(v)[:40])
@pytest.mark.parametrize("path", ["/v1/meters", "/v1/plans", "/v1/customers", "/v1/invoices",
                                  "/v1/pending-customers", "/v1/dead-letters", "/v1/credit-notes"])
def test_a_cursor_that_decodes_but_is_not_ours_is_400(local: Api, path: str, value: Any) -> None:
    err = error(local.get(path, params={"cursor": cursor_of(value)}), 400)
    assert (err["field"], err["code"]) == ("cursor", "invalid_cursor")


@pytest.mark.parametrize("raw", ["x", "!!!!", "a" * 3000, cursor_of([[[[[[[[[[]]]]]]]]]] * 1), "=" * 8,
                                 base64.urlsafe_b64encode(b"\xff\xfe").decode(),
                                 base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).decode()[:2048]])
def test_a_cursor_that_does_not_decode_is_400(local: Api, raw: str) -> None:
    assert error(local.get("/v1/customers", params={"cursor": raw}), 400)["field"] == "cursor"


def test_a_cursor_of_another_listing_is_400_and_ours_still_pages(local: Api) -> None:
    local.ok("PUT", "/v1/plans/p2", {"currency": "EUR"})
    meters = local.ok("GET", "/v1/meters", params={"limit": 1})
    assert meters["next_cursor"]
    err = error(local.get("/v1/plans", params={"cursor": meters["next_cursor"]}), 400)
    assert err["field"] == "cursor"
    err = error(local.get("/v1/invoices", params={"cursor": meters["next_cursor"], "customer": "acme"}), 400)
    assert err["field"] == "cursor"
    rest = local.ok("GET", "/v1/meters", params={"limit": 1, "cursor": meters["next_cursor"]})
    assert [m["code"] for m in meters["data"] + rest["data"]] == ["calls", "tokens"]


@pytest.mark.parametrize("cursor", ["²", "٣", "9" * 5000, "-1", "1.5"])
def test_line_usage_cursor_and_index_take_ascii_digits_only(local: Api, cursor: str) -> None:
    assert error(local.get("/v1/invoices/in_x/lines/0/usage", params={"cursor": cursor}), 400)["field"] == "cursor"
    assert error(local.get(f"/v1/invoices/in_x/lines/{cursor}/usage"), 400)["field"] == "index"


# -- bodies: media type, size, encoding, nesting, JSON syntax ----------------------------------
METER_JSON = json.dumps({"event_type": "x", "aggregation": "count"}).encode()


def put_raw(api: Api, path: str, body: bytes, ctype: str | None = "application/json", method: str = "PUT",
            key: str = "admin") -> Any:
    return api.request(method, path, key=key, content=body, headers={"Content-Type": ctype} if ctype else {})


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                   "multipart/form-data; boundary=x", "application/cloudevents+json"])
def test_a_json_body_under_another_media_type_is_415_naming_content_type(local: Api, ctype: str) -> None:
    err = error(put_raw(local, "/v1/meters/m", METER_JSON, ctype), 415)
    assert (err["field"], err["code"]) == ("content-type", "unsupported_media_type")
    assert "application/json" in err["message"] and ctype.split(";")[0] in err["message"]
    assert local.get("/v1/meters/m").status_code == 404  # nothing written


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON", None])
def test_json_is_taken_as_application_json_or_without_content_type(local: Api, ctype: str | None) -> None:
    assert put_raw(local, "/v1/meters/m", METER_JSON, ctype).status_code == 200


def test_curl_data_without_content_type_header_is_415_not_an_unknown_field(local: Api) -> None:
    """`curl -d '{…}'` sends application/x-www-form-urlencoded: the answer says what to add."""
    body = json.dumps({"events": [ev("c1", tokens=1)]}).encode()
    err = error(put_raw(local, "/v1/events", body, "application/x-www-form-urlencoded", "POST", "ingest"), 415)
    assert "-H 'Content-Type: application/json'" in err["message"]
    err = error(put_raw(local, "/v1/customers/c9", json.dumps(ACME).encode(), "application/x-www-form-urlencoded"), 415)
    assert err["field"] == "content-type"


def deep(levels: int) -> bytes:
    return ('{"events": [{"id": "d", "customer": "acme", "type": "api.call", "timestamp": "2026-10-10T10:00:00Z", '
            '"properties": {"x": ' + "[" * levels + "]" * levels + "}}]}").encode()


@pytest.mark.parametrize("method,path,body,key", [
    ("POST", "/v1/events", deep(1000), "ingest"),
    ("POST", "/v1/events", b"[" * 100_000, "ingest"),
    ("POST", "/v1/events", b'{"events": ' + b'{"a": ' * 990 + b"1" + b"}" * 991, "ingest"),
    ("PUT", "/v1/meters/m", b'{"event_type": "x", "aggregation": "count", "filter": {"a": ' + b"[" * 1000 + b"]" * 1000
     + b"}}", "admin"),
    ("PUT", "/v1/customers/c9", b'{"name": "x", "plan": "pro", "metadata": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000,
     "admin"),
    ("PUT", "/v1/plans/p9", b'{"currency": "USD", "charges": ' + b"[" * 5000, "admin"),
    ("POST", "/v1/simulations", b'{"plan": ' + b"[" * 999 + b"]" * 999 + b"}", "admin"),
    ("POST", "/v1/billing-runs", b"[" * 2000 + b"]" * 2000, "admin"),
])
def test_json_nested_a_thousand_levels_is_400_on_every_json_route(local: Api, method: str, path: str, body: bytes,
                                                                  key: str) -> None:
    err = error(put_raw(local, path, body, "application/json", method, key), 400)
    assert (err["field"], err["code"]) == ("body", "too_deep")
    assert local.get("/v1/events/d").status_code == 404


def test_json_nested_moderately_reaches_ingest(local: Api) -> None:
    resp = put_raw(local, "/v1/events", deep(20), "application/json", "POST", "ingest")
    assert resp.status_code == 422  # the event's own problem: properties must be flat
    assert [e["field"] for e in resp.json()["errors"]] == ["properties.x"]


@pytest.mark.parametrize("method,path,key", [("PUT", "/v1/meters/m", "admin"), ("POST", "/v1/events", "ingest"),
                                             ("POST", "/v1/billing-runs", "admin")])
def test_a_body_that_is_not_utf8_is_400_through_the_local_adapter(local: Api, method: str, path: str, key: str) -> None:
    body = b'{"events": [{"id": "\xff\xfe", "customer": "acme"}], "event_type": "\xc3"}'
    resp = put_raw(local, path, body, "application/json", method, key)
    assert resp.headers["content-type"].startswith("application/json")
    err = error(resp, 400)
    assert (err["field"], err["code"]) == ("body", "invalid_encoding")


def test_a_header_that_is_not_utf8_does_not_break_the_local_adapter(local: Api) -> None:
    resp = local.request("GET", "/v1/meters", key=None, headers={"Authorization": "Bearer caf\xe9".encode("latin-1")})
    assert error(resp, 401)["code"] == "unauthorized"


def test_an_integer_of_5000_digits_in_a_json_body_is_400(local: Api) -> None:
    body = json.dumps({**ACME, "payment_terms_days": 0}).replace('"payment_terms_days": 0',
                                                                  '"payment_terms_days": ' + "9" * 5000).encode()
    err = error(put_raw(local, "/v1/customers/c9", body), 400)
    assert (err["field"], err["code"]) == ("body", "invalid_json")


def test_a_body_over_the_limit_is_413(local: Api) -> None:
    big = json.dumps({"event_type": "x", "aggregation": "count", "name": "n" * 300_000}).encode()
    err = error(put_raw(local, "/v1/meters/big", big), 413)
    assert (err["field"], err["code"]) == ("body", "payload_too_large")
    events = json.dumps({"events": [ev(f"b{i}", tokens=1, pad="p" * 1000) for i in range(1000)] * 6}).encode()
    assert len(events) > 5 * 1024 * 1024
    assert error(put_raw(local, "/v1/events", events, "application/json", "POST", "ingest"), 413)["field"] == "body"
    assert local.get("/v1/events/b0").status_code == 404 and local.get("/v1/meters/big").status_code == 404


# -- ingest: a number out of range is that event's error, never a 500 or a half-stored batch ----
def test_1e999_in_a_batch_rejects_that_event_and_a_retry_gives_the_same_answer(local: Api) -> None:
    raw = ('{"events": [' + json.dumps(ev("ok-1", tokens=5))
           + ', {"id": "inf-1", "customer": "acme", "type": "api.call", "timestamp": "2026-10-10T10:00:00Z",'
           ' "properties": {"tokens": 1e999}}, ' + json.dumps(ev("ok-2", tokens=7)) + "]}").encode()
    first = put_raw(local, "/v1/events", raw, "application/json", "POST", "ingest")
    assert first.status_code == 207, first.text
    body = first.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [(e["index"], e["id"], e["field"]) for e in body["errors"]] == [(1, "inf-1", "properties.tokens")]
    retry = put_raw(local, "/v1/events", raw, "application/json", "POST", "ingest")
    assert retry.status_code == 207 and (retry.json()["duplicates"], retry.json()["rejected"]) == (2, 1)
    assert local.get("/v1/events/inf-1").status_code == 404
    only_bad = raw.replace(b'"ok-1"', b'"inf-2"').replace(b'"tokens": 5', b'"tokens": 1e999')
    only_bad = only_bad.replace(b'"ok-2"', b'"inf-3"').replace(b'"tokens": 7', b'"tokens": -1e999')
    none = put_raw(local, "/v1/events", only_bad, "application/json", "POST", "ingest")
    assert none.status_code == 422 and none.json()["accepted"] == 0


# -- path parameters: one grammar per kind of id, percent-encoded segments -----------------------
@pytest.mark.parametrize("segment,problem", [("%F0%9F%98%80", "invalid_characters"), ("a%2Fb", "invalid_characters"),
                                             ("a%23b", "invalid_characters"), ("%2E%2E", "invalid_characters"),
                                             ("%2E", "invalid_characters"), ("%20a", "invalid_characters"),
                                             ("a%3Fb", "invalid_characters"), ("%FF", "invalid_encoding"),
                                             ("x" * 129, "invalid_length"), ("\U0001F600", "invalid_characters")])
def test_an_event_id_outside_the_grammar_is_400_naming_it(local: Api, segment: str, problem: str) -> None:
    err = error(local.get(f"/v1/events/{segment}"), 400)
    assert (err["field"], err["code"]) == ("event_id", problem)


def test_a_customer_id_outside_the_grammar_is_400_on_put_and_nothing_is_created(local: Api) -> None:
    err = error(local.put("/v1/customers/acme%23x", {"name": "X", "plan": "pro"}), 400)
    assert (err["field"], err["code"]) == ("customer_id", "invalid_characters")
    assert "letters, digits" in err["message"]
    assert [c["id"] for c in local.ok("GET", "/v1/customers")["data"]] == ["acme"]


VALID = {"code": "tokens", "customer_id": "acme", "event_id": "e1", "invoice_id": "in_x", "note_id": "cn_x",
         "discount_id": "d1", "grant_id": "g1", "index": "0", "action": "void", "key_id": "key_0123456789abcdef", "run_id": "run_x",
         "reconciliation_id": "rc_x", "endpoint_id": "ep1"}
BAD = {"code": "a%2Fb", "customer_id": "a%23b", "event_id": "%2E%2E", "invoice_id": "in%3Fx", "note_id": "%F0%9F%98%80",
       "discount_id": "d%20", "grant_id": "g%25", "index": "%C2%B2", "action": "refund", "key_id": "key_XYZ", "run_id": "run%23x",
       "reconciliation_id": "rc%23x", "endpoint_id": "ep%23x"}


def test_every_path_parameter_of_every_route_is_checked_by_its_grammar(local: Api) -> None:
    import re

    from meterbill.api.routes import PATH_PARAMETERS, router

    seen = set()
    for rule, methods, *_ in router._routes:
        if rule.startswith("/portal/"):   # a bad link gets the portal's plain 403/410 page (tests/integration/test_portal.py)
            continue
        for method in [methods] if isinstance(methods, str) else methods:
            for name in re.findall(r"<(\w+)>", rule):
                assert name in PATH_PARAMETERS, (rule, name)
                path = re.sub(r"<(\w+)>", lambda m: BAD[name] if m[1] == name else VALID[m[1]], rule)
                resp = local.request(method, path, json_body={} if method in ("PUT", "POST") else None)
                err = error(resp, 400)
                assert err["field"] == name, (method, rule, err)
                seen.add(name)
    assert seen == set(PATH_PARAMETERS) - {"token"}


@pytest.mark.parametrize("customer", ["café bar", "o'brien (eu) $&", "顧客:42", "a+b=c"])
def test_percent_encoded_ids_work_at_ingest_and_in_every_route(local: Api, customer: str) -> None:
    from urllib.parse import quote

    segment = quote(customer, safe="")
    created = local.ok("PUT", f"/v1/customers/{segment}", {"name": customer, "plan": "pro"})
    assert created["id"] == customer
    assert local.ok("GET", f"/v1/customers/{segment}")["id"] == customer
    event_id = f"{customer} #1".replace("#", "n")
    body = local.ok("POST", "/v1/events", {"events": [ev(event_id, customer=customer, tokens=3)]}, key="ingest")
    assert body["accepted"] == 1 and body["pending"] == []
    got = local.ok("GET", f"/v1/events/{quote(event_id, safe='')}")
    assert (got["id"], got["customer"]) == (event_id, customer)
    assert local.ok("GET", f"/v1/customers/{segment}/upcoming-invoice")["customer"]["id"] == customer


# -- methods ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,allow", [("TRACE", "/v1/meters", "GET"), ("POST", "/v1/meters/tokens", "GET, PUT"),
                                               ("DELETE", "/v1/events", "POST"), ("OPTIONS", "/v1/customers/acme", "GET, PUT"),
                                               ("PATCH", "/v1/invoices/in_x/void", "POST"), ("TRACE", "/v1/health", "GET"),
                                               ("HEAD", "/v1/meters", "GET")])
def test_a_method_a_known_path_does_not_take_is_405_with_allow(local: Api, method: str, path: str, allow: str) -> None:
    resp = local.request(method, path)
    assert resp.status_code == 405, resp.text
    assert resp.headers["allow"] == allow
    if method != "HEAD":
        assert error(resp, 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("method,path", [("TRACE", "/v1/nothing"), ("GET", "/v1/invoices/in_x/lines"),
                                         ("GET", "/v1/meters/tokens/extra")])
def test_an_unknown_path_is_still_404(local: Api, method: str, path: str) -> None:
    assert error(local.request(method, path), 404)["code"] == "not_found"


# -- the Lambda path: API Gateway's HTTP API event --------------------------------------------
def apigw(method: str, raw_path: str, key: str, body: bytes | None = None, ctype: str = "application/json") -> dict:
    from tests.integration.test_lambda_handlers import KEYS, recorded

    event = recorded("apigw_put_meter.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["http"]["method"] = method
    event["headers"]["authorization"] = f"Bearer {KEYS[key]}"
    event["headers"]["content-type"] = ctype
    event["pathParameters"] = {"proxy": raw_path[1:]}
    event["body"] = base64.b64encode(body).decode() if body is not None else None
    event["isBase64Encoded"] = body is not None
    return event


def call(lambda_api: Any, event: dict) -> tuple[int, dict[str, str], Any]:
    from tests.integration.test_lambda_handlers import ctx

    resp = lambda_api.handler(event, ctx("meterbill-api"))
    body = base64.b64decode(resp["body"]).decode() if resp.get("isBase64Encoded") else resp["body"]
    return resp["statusCode"], resp.get("headers", {}), json.loads(body)


@pytest.mark.parametrize("raw_path", ["/v1/customers/caf%C3%A9%20bar%3A1", "/v1/customers/café bar:1"],
                         ids=["percent-encoded", "decoded"])
def test_lambda_takes_ids_in_raw_path_percent_encoded_or_decoded(lambda_api: Any, priced: Any, raw_path: str) -> None:
    status, _, body = call(lambda_api, apigw("PUT", raw_path, "admin", json.dumps({"name": "C", "plan": "pro"}).encode()))
    assert (status, body["id"]) == (200, "café bar:1"), body
    status, _, body = call(lambda_api, apigw("GET", raw_path, "admin"))
    assert (status, body["id"]) == (200, "café bar:1"), body


@pytest.mark.parametrize("raw_path", ["/v1/customers/acme%23x", "/v1/customers/acme#x", "/v1/customers/%F0%9F%98%80",
                                      "/v1/customers/\U0001F600".encode().decode("unicode_escape")])
def test_lambda_answers_400_for_an_id_outside_the_grammar(lambda_api: Any, priced: Any, raw_path: str) -> None:
    status, _, body = call(lambda_api, apigw("PUT", raw_path, "admin", json.dumps({"name": "C", "plan": "pro"}).encode()))
    assert (status, body["error"]["field"]) == (400, "customer_id"), body


def test_lambda_answers_400_for_a_body_that_is_not_utf8(lambda_api: Any) -> None:
    status, headers, body = call(lambda_api, apigw("POST", "/v1/events", "ingest", b'{"events": [{"id": "\xff"}]}'))
    assert (status, body["error"]["field"], body["error"]["code"]) == (400, "body", "invalid_encoding")
    assert headers["Content-Type"].startswith("application/json")


def test_lambda_answers_405_with_allow_and_415_naming_content_type(lambda_api: Any) -> None:
    status, headers, body = call(lambda_api, apigw("TRACE", "/v1/meters", "admin"))
    assert (status, headers.get("Allow")) == (405, "GET")
    status, _, body = call(lambda_api, apigw("PUT", "/v1/meters/m", "admin", METER_JSON, "text/plain"))
    assert (status, body["error"]["field"]) == (415, "content-type")


@pytest.mark.parametrize("body,field", [
    ('{"event_type": "x", "aggregation": "count", "name": "\\udaec"}', "name"),
    ('{"event_type": "x", "aggregation": "count", "filter": {"a": ["ok", "\\ud9a8"]}}', "filter.a[1]"),
    ('{"event_type": "x", "aggregation": "count", "filter": {"\\udc00": [1]}}', "filter"),
])
def test_an_unpaired_surrogate_in_a_json_body_is_400_naming_the_field(local: Api, body: str, field: str) -> None:
    err = error(put_raw(local, "/v1/meters/m", body.encode()), 400)
    assert (err["field"], err["code"]) == (field, "invalid_unicode")
    assert local.get("/v1/meters/m").status_code == 404 and local.get("/v1/meters").status_code == 200


def test_a_meter_filter_on_an_empty_property_name_is_400_and_listing_still_works(local: Api) -> None:
    err = error(local.put("/v1/meters/m", {"event_type": "x", "aggregation": "count", "filter": {"": [1]}}), 400)
    assert err["field"].startswith("filter")
    assert local.ok("GET", "/v1/meters")["next_cursor"] is None


# -- the README's walk-through, as written, against the app ---------------------------------------
def readme_curls(now: Any) -> list[list[str]]:
    """The README's walk-through commands, as the shell would run them at ``now`` (its `$(date -u +…)`)."""
    import re
    import shlex
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    block = text.split("## Using the API", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    block = re.sub(r"\$\(date -u \+([^)]*)\)", lambda m: now.strftime(m[1]), block)
    commands, pending = [], ""
    for line in block.splitlines():
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if words and words[0] == "curl":
            commands.append(words)
        elif words:
            assert re.fullmatch(r"\w+=.*", " ".join(words)), words  # KEY=…, JSON=…
        pending = ""
    return commands


def test_the_readme_walk_through_works_as_written(local: Api, clock: Any, drain: Any) -> None:
    variables = {"$KEY": SECRETS["admin"], "$JSON": "Content-Type: application/json"}
    commands = readme_curls(clock.now)
    assert len(commands) == 8
    for words in commands:
        words = [variables.get(w, w.replace("$KEY", SECRETS["admin"])) for w in words]
        method, headers, body, url = "GET", {}, None, None
        it = iter(words[1:])
        for word in it:
            if word == "-X":
                method = next(it)
            elif word == "-H":
                name, value = next(it).split(": ", 1)
                headers[name] = value
            elif word == "-d":
                body = next(it).encode()
                method = "POST" if method == "GET" else method
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # what curl sends
            else:
                url = word
        resp = local.request(method, url.removeprefix("localhost:8000"), key=None, headers=headers, content=body)
        assert 200 <= resp.status_code < 300, (words, resp.status_code, resp.text[:300])
        if "/v1/events" in url:
            assert resp.json()["accepted"] == 1 and not resp.json().get("before_start"), resp.text
            drain()   # what the local stack's stream poller does within a quarter second
    # ... and the event is billed on the running bill, as the README says
    upcoming = resp.json()
    assert url.endswith("/upcoming-invoice")
    [tokens] = [ln for ln in upcoming["lines"] if ln.get("meter") == "output_tokens"]
    assert (tokens["quantity"], tokens["amount"]) == ("512", "5.12"), upcoming


def test_ingest_never_fails_on_its_metrics(local: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Powertools publishes a metric's values every 100th one (locally nothing flushes them)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    statuses = {local.post("/v1/events", {"events": [ev(f"m{i}", tokens=1)]}, key="ingest").status_code
                for i in range(101)}
    assert statuses == {200}
