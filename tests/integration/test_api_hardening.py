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
