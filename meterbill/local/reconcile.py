"""`meterbill reconcile --period YYYY-MM [--customer C] [--sample N]`: the reconciliation run in
this process (services/reconciliation.py), against the running local stack or, with --aws, AWS.
Progress on stderr (rich), the report on stdout (JSON); exit status 1 when drift was found."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meterbill.services.reconciliation import DEFAULT_SAMPLE, MAX_READ_UNITS, MAX_SAMPLE


def add_parser(sub: Any) -> None:
    p = sub.add_parser("reconcile", help="check raw events against usage, usage against invoices, invoices against "
                                         "payments and the integrations' sync state; lists every difference")
    p.add_argument("--period", required=True, help="the month whose invoices to check, YYYY-MM")
    p.add_argument("--customer", help="only this customer, its raw events recounted in full (default: every "
                                      "customer's invoices, a sample's raw events)")
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                   help=f"customers whose raw events are recounted (1-{MAX_SAMPLE}, default {DEFAULT_SAMPLE})")
    p.add_argument("--max-read-units", type=float, default=MAX_READ_UNITS,
                   help=f"stop the raw-event Scan past this many read units (default {MAX_READ_UNITS:.0f})")
    p.add_argument("--pages", type=int, default=10, help="pages of 100 findings to print (default 10; all are "
                                                         "stored: GET /v1/reconciliations/{id})")
    p.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")


def reconcile(args: argparse.Namespace) -> int:
    from meterbill.local.console import container, progress_bar
    from meterbill.services.errors import DomainError, ServiceError

    service = container(args.aws).reconciliation
    try:
        with progress_bar({"invoices": "customers' invoices checked", "recount": "raw events scanned"}) as progress:
            report = service.run(args.period, args.customer, args.sample, args.max_read_units, progress)
        view = service.view(report["id"])
        for _ in range(args.pages - 1):
            if not view["next_cursor"]:
                break
            more = service.view(report["id"], view["next_cursor"])
            view.update(findings=view["findings"] + more["findings"], next_cursor=more["next_cursor"])
    except (DomainError, ServiceError) as exc:
        print(f"meterbill: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(view, indent=2, default=str))
    print("clean: no differences" if report["clean"] else
          f"drift: {report['drift']} difference(s) to investigate", file=sys.stderr)
    return 0 if report["clean"] else 1
