"""HTTP routes of anomaly detection (issue 11): list the anomalies found, scan history on demand."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api import openapi
from meterbill.api.documents import DECIMAL, EXAMPLES, INSTANT, INT, SCHEMAS, STRING, array, nullable, obj, page as page_of
from meterbill.api.guards import PathParameter
from meterbill.api.routes import QUERY_PARAMETERS, Cursor, Limit, container, page, router
from meterbill.api.routes import _INSTANT, _check_instant  # the shared instant rule
from meterbill.api.schemas import INSTANT as INSTANT_PATTERN
from meterbill.api.schemas import Strict, instant
from meterbill.domain.anomalies import KINDS
from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import ID_PATTERN, MAX_ID, check_id


def _check_kind(value: str, name: str) -> None:
    if value not in KINDS:
        raise InvalidField(name, f"must be one of: {', '.join(KINDS)}")


QUERY_PARAMETERS["kind"] = PathParameter(_check_kind, {"type": "string", "enum": list(KINDS)},
                                         "only anomalies of this kind", "spike")
QUERY_PARAMETERS["since"] = PathParameter(_check_instant, _INSTANT, "only anomalies whose window starts at or "
                                          "after this instant (RFC 3339)", "2026-11-01T00:00:00Z")


# The OpenAPI document's parts for these routes (meterbill/api/openapi.py builds it from these tables).
_KIND = {"type": "string", "enum": list(KINDS)}
SCHEMAS["Anomaly"] = obj(
    {"id": STRING, "customer": STRING, "meter": STRING, "kind": _KIND, "start": INSTANT, "end": INSTANT,
     "expected": DECIMAL, "expected_low": DECIMAL, "expected_high": DECIMAL, "observed": DECIMAL, "score": DECIMAL,
     "seasonality": {"type": "string", "enum": ["weekly", "daily"]}, "detected_at": INSTANT, "updated_at": INSTANT,
     "alert": {"type": "string", "enum": ["pending", "sent", "none"]}}, {"alerted_at": INSTANT},
    description="usage of one meter outside its expected range over a window [start, end): the expected value and "
                "range and the observed value are totals over the window; score: the largest robust z-score")
SCHEMAS["AnomalyPage"] = page_of("Anomaly")
SCHEMAS["AnomalyScan"] = obj(
    {"from": INSTANT, "to": INSTANT, **{n: INT for n in ("customers", "series", "usage_items_read", "found", "created",
                                                        "extended", "alerts_sent", "alerts_failed")},
     "anomalies": array(obj({"id": STRING, "kind": _KIND, "customer": STRING, "meter": STRING, "start": INSTANT,
                             "outcome": {"type": "string", "enum": ["created", "extended", "unchanged"]}})),
     "next_cursor": nullable(STRING)},
    description="what a scan found (the first 100 anomalies named); next_cursor: more customers to scan")
_ANOMALY = {"id": "an_5d0c8f0e9a4b3c2d1e0f9a8b", "customer": "acme", "meter": "tokens", "kind": "spike",
            "start": "2026-11-05T10:00:00Z", "end": "2026-11-05T11:00:00Z", "expected": "100",
            "expected_low": "32.5", "expected_high": "167.5", "observed": "900", "score": "53.33",
            "seasonality": "weekly", "detected_at": "2026-11-05T12:10:00Z", "updated_at": "2026-11-05T12:10:00Z",
            "alert": "sent", "alerted_at": "2026-11-05T12:10:01Z"}
EXAMPLES["Anomaly"] = _ANOMALY
EXAMPLES["AnomalyPage"] = {"data": [_ANOMALY], "next_cursor": None}
EXAMPLES["AnomalyScan"] = {"from": "2026-11-04T12:00:00Z", "to": "2026-11-05T12:00:00Z", "customers": 1, "series": 1,
                           "usage_items_read": 843, "found": 1, "created": 1, "extended": 0, "alerts_sent": 1,
                           "alerts_failed": 0, "anomalies": [{"id": _ANOMALY["id"], "kind": "spike", "customer": "acme",
                                                              "meter": "tokens", "start": _ANOMALY["start"],
                                                              "outcome": "created"}], "next_cursor": None}
openapi.SUCCESS["GET /v1/anomalies"] = (200, "AnomalyPage")
openapi.SUCCESS["POST /v1/anomaly-scans"] = (200, "AnomalyScan")
openapi.REQUESTS["POST /v1/anomaly-scans"] = {"customer": "acme", "from": "2026-10-01T00:00:00Z",
                                              "to": "2026-11-05T00:00:00Z"}


class AnomalyScanIn(Strict):
    from_: str | None = Field(default=None, alias="from", pattern=INSTANT_PATTERN, examples=["2026-10-01T00:00:00Z"],
                              description="first scanned hour (RFC 3339); default a day before to",
                              json_schema_extra={"format": "date-time"})
    to: str | None = instant("end of the scanned hours (exclusive); default now")
    customer: str | None = Field(default=None, min_length=1, max_length=MAX_ID,  # the grammar: check_id
                                 json_schema_extra={"pattern": ID_PATTERN},
                                 description="only this customer (the whole range in one request)")
    cursor: str | None = Field(default=None, min_length=1, max_length=2048,
                               description="every customer: the next_cursor of the previous page, unchanged")


@router.get("/v1/anomalies",
            description="Anomalies found in usage (spike, drop, silent), newest window first: each with its "
                        "window, the expected value and range, what was observed and a score (robust z-score).")
def list_anomalies(customer: Cursor = None, meter: Cursor = None, kind: Cursor = None, since: Cursor = None,
                   limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().anomalies.list(customer, meter, kind, since, limit, cursor))


@router.post("/v1/anomaly-scans",
             description="Scan stored usage for anomalies over a range of hours (default: the last day; at most a "
                         "year). Answers with the result (200): one customer's whole range, or without `customer` one "
                         "page of 100 customers and `next_cursor` to continue. Idempotent: an anomaly is stored "
                         "once, and alerted once, however often its hours are scanned.")
def scan_anomalies(body: Annotated[AnomalyScanIn, Body()]) -> dict[str, Any]:
    if body.customer is not None:
        check_id(body.customer, "customer")
    return container().anomalies.request(body.from_, body.to, body.customer, body.cursor)

