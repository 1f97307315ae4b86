"""`meterbill anomalies scan [--customer …] [--since …] [--until …]`: scan stored usage for anomalies
in this process (the running local stack, or AWS with --aws), every customer page after page.
Idempotent: an anomaly already stored is found again, never stored or alerted twice."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    anomalies = sub.add_parser("anomalies", help="usage anomalies (spikes, drops, silent meters)")
    anomalies_sub = anomalies.add_subparsers(dest="anomalies_command", required=True)
    scan = anomalies_sub.add_parser("scan", help="scan stored usage over a range of hours (default: the last "
                                                 "day; at most a year) and store and alert what it finds")
    scan.add_argument("--customer", help="only this customer (default: every customer)")
    scan.add_argument("--since", help="first hour scanned, RFC 3339 (default: a day before --until)")
    scan.add_argument("--until", help="end of the range (exclusive), RFC 3339 (default: now)")
    scan.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")


def run(args: argparse.Namespace) -> int:
    from meterbill.local import stack
    from meterbill.services.errors import DomainError, ServiceError

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
    from meterbill.bootstrap import bootstrap

    try:
        result = bootstrap().anomalies.history(
            args.since, args.until, args.customer,
            lambda done: print(f"scanned {done['customers']} customers, found {done['found']}", file=sys.stderr))
    except (DomainError, ServiceError) as exc:
        print(f"meterbill: {exc}", file=sys.stderr)
        return 1
    result.pop("next_cursor", None)
    print(json.dumps(result, indent=2))
    return 0
