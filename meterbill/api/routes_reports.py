"""Reports across customers: ``GET /v1/reports/usage|revenue|aging`` as JSON, or CSV with
``Accept: text/csv`` or ``?format=csv`` (the report's rows under a header of its columns)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from meterbill.api.guards import PathParameter
from meterbill.api.routes import _INSTANT, QUERY_PARAMETERS, _check_instant, container, router
from meterbill.domain.reports import to_csv
from meterbill.services.errors import InvalidField

CURRENCY = re.compile(r"[A-Z]{3}")


def _check_currency(value: str, name: str) -> None:
    if not CURRENCY.fullmatch(value):
        raise InvalidField(name, "must be an ISO 4217 currency code such as EUR")


QUERY_PARAMETERS.setdefault("as_of", PathParameter(
    _check_instant, _INSTANT, "the date receivables are aged at (RFC 3339), "
    "default now", "2026-12-01T00:00:00Z"))
QUERY_PARAMETERS.setdefault("currency", PathParameter(
    _check_currency, {"type": "string", "pattern": "^[A-Z]{3}$"}, "only amounts in this currency", "EUR"))

Str = Annotated[str | None, Query()]
Format = Annotated[Literal["json", "csv"] | None, Query(description="csv: the rows as CSV (also Accept: text/csv)")]
CSV_RESPONSES = {200: {"description": "the report as JSON, or its rows as CSV",
                       "content": {"application/json": {"schema": {"type": "object"}},
                                   "text/csv": {"schema": {"type": "string"}}}}}
TAG = "tag:[a-z][a-z0-9_]{0,31}"


def groups(*names: str) -> str:
    return f"^({'|'.join(names)}|{TAG})$"


def answer(report: dict[str, Any], fmt: str | None) -> Any:
    accept = (router.current_event.headers or {}).get("accept") or ""
    if fmt == "csv" or (fmt is None and "text/csv" in accept.lower()):
        name = f"{report['report']}-{report.get('as_of') or report.get('to', '')}"[:60]
        return Response(200, "text/csv; charset=utf-8", body=to_csv(report),
                        headers={"Content-Disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9-]", "", name)}.csv"',
                                 "Cache-Control": "private, no-cache"})
    return report


@router.get("/v1/reports/usage", responses=CSV_RESPONSES,
            description="Quantities billed per meter (the usage lines of invoices whose period starts in "
                        "[from, to); default the last 366 days), grouped by customer (the top `limit` per meter), "
                        "meter, plan, segment (the customer tag `segment`) or tag:<key>. Read from invoices, "
                        "never raw events; `read` says how many items and read units it took.")
def report_usage(from_: Annotated[str | None, Query(alias="from")] = None, to: Str = None, meter: Str = None,
                 customer: Str = None,
                 group_by: Annotated[str, Query(pattern=groups("customer", "meter", "plan", "segment"),
                                                description="customer | meter | plan | segment | tag:<key>")
                                  ] = "customer",
                 limit: Annotated[int, Query(ge=1, le=1000)] = 20, format: Format = None):  # type: ignore[no-untyped-def]  # noqa: A002
    return answer(container().reports.usage(from_, to, meter, customer, group_by, limit), format)


@router.get("/v1/reports/revenue", responses=CSV_RESPONSES,
            description="Billed, prepaid credit applied, credited (credit notes), collected (paid), outstanding "
                        "(open) and uncollectible amounts of the invoices whose period starts in [from, to), per "
                        "currency (never added across currencies), grouped by period (the month the billing "
                        "period starts in, in the customer's timezone), customer, plan, currency, segment or "
                        "tag:<key>. Money as exact decimal strings; `totals` per currency.")
def report_revenue(from_: Annotated[str | None, Query(alias="from")] = None, to: Str = None, customer: Str = None,
                   group_by: Annotated[str, Query(pattern=groups("period", "customer", "plan", "currency", "segment"),
                                                  description="period | customer | plan | currency | segment | "
                                                              "tag:<key>")] = "period",
                   currency: Str = None, format: Format = None):  # type: ignore[no-untyped-def]  # noqa: A002
    return answer(container().reports.revenue(from_, to, customer, group_by, currency), format)


@router.get("/v1/reports/aging", responses=CSV_RESPONSES,
            description="Receivables open at `as_of` (issued by then, not paid, voided or written off by then; "
                        "today's amount due) by days past due: current (not yet due), d1_30, d31_60, d61_90, "
                        "d90_plus; per currency, grouped by currency, customer, plan, segment or tag:<key>.")
def report_aging(as_of: Str = None, customer: Str = None,
                 group_by: Annotated[str, Query(pattern=groups("currency", "customer", "plan", "segment"),
                                                description="currency | customer | plan | segment | tag:<key>")
                                  ] = "currency",
                 format: Format = None):  # type: ignore[no-untyped-def]  # noqa: A002
    return answer(container().reports.aging(as_of, customer, group_by), format)
