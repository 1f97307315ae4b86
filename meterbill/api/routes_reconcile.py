"""HTTP routes of reconciliation (services/reconciliation.py), on the shared router.

POST answers 202 with the stored request: on AWS the reconcile function runs it (a raw-event Scan
outlasts API Gateway's 30 s); the local stack runs it before answering (status ``finished``).
GET shows the run and its findings a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api.documents import BOOL, EXAMPLES, INSTANT, INT, OBJECT, SCHEMAS, STRING, array, nullable, obj, ref
from meterbill.api.guards import PathParameter
from meterbill.api.openapi import REQUESTS, SUCCESS
from meterbill.api.routes import PATH_PARAMETERS, Cursor, container, page, plain, router
from meterbill.api.schemas import Strict
from meterbill.domain.ids import ID_PATTERN, MAX_ID, check_id
from meterbill.domain.reconciliation import KINDS, SEVERITIES
from meterbill.services.reconciliation import DEFAULT_SAMPLE, MAX_SAMPLE, PERIOD_PATTERN

PATH_PARAMETERS["reconciliation_id"] = PathParameter(
    check_id, PATH_PARAMETERS["run_id"].schema, "A reconciliation id, as POST /v1/reconciliations answered it.",
    "rc_202610_1793880000000_a1b2c3")


class ReconciliationIn(Strict):
    period: str = Field(pattern=f"^{PERIOD_PATTERN}$", description="the month whose invoices to check, YYYY-MM")
    customer: str | None = Field(default=None, min_length=1, max_length=MAX_ID,
                                 json_schema_extra={"pattern": ID_PATTERN},
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


# -- the OpenAPI document: answers and examples of these routes ----------------------------------
_FINDING = {"kind": "aggregate_vs_invoice", "severity": "error", "problem": "line_differs",
            "message": "invoice T-000001, line 'Tokens': billed differs from re-rating the stored usage",
            "customer": "acme", "expected": "quantity 1300, amount 11.50", "found": "quantity 1200, amount 11.00",
            "period": "2026-10-01T00:00:00Z/2026-11-01T00:00:00Z", "meter": "tokens", "invoice": "in_ee30267f8530f78e08fa",
            "line": 1}
_RECON: dict[str, Any] = {"id": "rc_202610_1793880000000_a1b2c3", "period": "2026-10", "customer": None, "sample": 10,
          "status": "finished", "started_at": "2026-11-05T12:00:00Z", "finished_at": "2026-11-05T12:00:04Z",
          "customers_checked": 1, "invoices_checked": 1, "integrations": [],
          "recount": {"customers": ["acme"], "events_scanned": 3, "read_units": "0.1", "complete": True,
                      "skipped": None},
          "clean": False, "drift": 1, "expected_differences": 0,
          "by_kind": {k: int(k == "aggregate_vs_invoice") for k in KINDS}, "findings_stored": 1, "pages": 1}
SCHEMAS["Finding"] = obj(
    {"kind": {"type": "string", "enum": list(KINDS)}, "severity": {"type": "string", "enum": list(SEVERITIES)},
     "problem": STRING, "message": STRING, "customer": STRING},
    {"expected": STRING, "found": STRING, "period": STRING, "meter": STRING, "bucket": INSTANT, "hour_key": STRING,
     "invoice": STRING, "line": INT, "events": array(STRING), "payment": STRING, "integration": STRING},
    description="one difference: what was expected, what was found, and the ids to investigate "
                "(severity info: an expected difference, e.g. late usage marked for re-rating)")
SCHEMAS["Reconciliation"] = obj(
    {"id": STRING, "period": STRING, "status": {"type": "string", "enum": ["queued", "finished", "failed"]},
     "sample": INT},
    {"customer": STRING, "requested_at": INSTANT, "started_at": INSTANT, "finished_at": INSTANT, "clean": BOOL,
     "drift": INT, "expected_differences": INT, "by_kind": OBJECT, "customers_checked": INT, "invoices_checked": INT,
     "integrations": array(STRING), "recount": OBJECT, "findings_stored": INT, "pages": INT, "error": STRING},
    description="a reconciliation: clean, or how many differences of each kind")
SCHEMAS["ReconciliationView"] = {"allOf": [ref("Reconciliation"), obj(
    {"findings": array(ref("Finding")), "next_cursor": nullable(STRING)})],
    "description": "a reconciliation and a page of its findings (100 a page)"}
EXAMPLES["Reconciliation"] = _RECON
EXAMPLES["ReconciliationView"] = {**_RECON, "findings": [_FINDING], "next_cursor": None}
SUCCESS["POST /v1/reconciliations"] = (202, "Reconciliation")
SUCCESS["GET /v1/reconciliations/{reconciliation_id}"] = (200, "ReconciliationView")
REQUESTS["POST /v1/reconciliations"] = {"period": "2026-10", "sample": 10}
