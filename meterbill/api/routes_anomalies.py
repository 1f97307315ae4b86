"""HTTP routes of anomaly detection (issue 11): list the anomalies found, scan history on demand."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api.guards import PathParameter
from meterbill.api.routes import QUERY_PARAMETERS, Cursor, Limit, container, page, router
from meterbill.api.routes import _INSTANT, _check_instant  # the shared instant rule
from meterbill.api.schemas import INSTANT, Strict, instant
from meterbill.domain.anomalies import KINDS
from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import MAX_ID, check_id


def _check_kind(value: str, name: str) -> None:
    if value not in KINDS:
        raise InvalidField(name, f"must be one of: {', '.join(KINDS)}")


QUERY_PARAMETERS["kind"] = PathParameter(_check_kind, {"type": "string", "enum": list(KINDS)},
                                         "only anomalies of this kind", "spike")
QUERY_PARAMETERS["since"] = PathParameter(_check_instant, _INSTANT, "only anomalies whose window starts at or "
                                          "after this instant (RFC 3339)", "2026-11-01T00:00:00Z")


class AnomalyScanIn(Strict):
    from_: str | None = Field(default=None, alias="from", pattern=INSTANT, examples=["2026-10-01T00:00:00Z"],
                              description="first scanned hour (RFC 3339); default a day before to",
                              json_schema_extra={"format": "date-time"})
    to: str | None = instant("end of the scanned hours (exclusive); default now")
    customer: str | None = Field(default=None, min_length=1, max_length=MAX_ID,
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

