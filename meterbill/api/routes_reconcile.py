"""HTTP routes of reconciliation (services/reconciliation.py), on the shared router.

POST answers 202 with the stored request: on AWS the reconcile function runs it (a raw-event Scan
outlasts API Gateway's 30 s); the local stack runs it before answering (status ``finished``).
GET shows the run and its findings a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api.guards import PathParameter
from meterbill.api.routes import PATH_PARAMETERS, Cursor, container, page, plain, router
from meterbill.api.schemas import Strict
from meterbill.domain.ids import check_id
from meterbill.services.reconciliation import DEFAULT_SAMPLE, MAX_SAMPLE

PATH_PARAMETERS["reconciliation_id"] = PathParameter(
    check_id, PATH_PARAMETERS["run_id"].schema, "A reconciliation id, as POST /v1/reconciliations answered it.",
    "rc_202610_1793880000000_a1b2c3")


class ReconciliationIn(Strict):
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="the month whose invoices to check, YYYY-MM")
    customer: str | None = Field(default=None, min_length=1, max_length=128,
                                 description="only this customer, its raw events recounted in full")
    sample: int = Field(default=DEFAULT_SAMPLE, ge=1, le=MAX_SAMPLE,
                        description="customers whose raw events are recounted (default 10)")


@router.post("/v1/reconciliations",
             description="Reconcile a month: raw events against usage (a sample of customers, or the one named), "
                         "usage against invoiced lines, each invoice's arithmetic, invoices against payments, and "
                         "each integration's sync state. 202 with the request; follow it with "
                         "GET /v1/reconciliations/{reconciliation_id}.")
def start_reconciliation(body: Annotated[ReconciliationIn, Body()]) -> tuple[dict[str, Any], int]:
    if body.customer is not None:
        check_id(body.customer, "customer")
    return plain(container().reconciliation.request(body.period, body.customer, body.sample)), 202


@router.get("/v1/reconciliations/<reconciliation_id>",
            description="A reconciliation: status, clean or the number of differences by kind, the recount's cost, "
                        "and its findings (kind, severity, expected vs found, the ids to investigate), 100 a page.")
def get_reconciliation(reconciliation_id: str, cursor: Cursor = None) -> dict[str, Any]:
    view = container().reconciliation.view(reconciliation_id, cursor)
    findings = page(view.pop("findings"), view.pop("next_cursor"))
    return {**plain(view), "findings": findings["data"], "next_cursor": findings["next_cursor"]}
