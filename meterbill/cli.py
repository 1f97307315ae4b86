"""`meterbill` command: run the local stack, run the demo, start a billing run, manage API keys (create,
list, revoke), re-drive stream batches, the privacy sweep, rebuild usage from raw events, reports
(`meterbill report usage|revenue|aging`, with charts)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _key_service(args: argparse.Namespace) -> Any:
    from meterbill.local import stack

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
    from meterbill.bootstrap import bootstrap

    return bootstrap().keys


def _keys(args: argparse.Namespace) -> int:
    from meterbill.services.errors import DomainError, NotFound

    try:
        return _keys_command(_key_service(args), args)
    except (DomainError, NotFound) as exc:
        print(exc, file=sys.stderr)
        return 1


def _keys_command(keys: Any, args: argparse.Namespace) -> int:
    from meterbill.domain.instants import parse_instant

    if args.keys_command == "create":
        expires = parse_instant(args.expires_at, "expires_at") if args.expires_at else None
        key, doc = keys.create(args.scope, name=args.name or "", expires_at=expires)
        print(json.dumps({"key": key, "id": doc["id"], "scopes": doc["scopes"], "name": doc["name"],
                          "expires_at": doc["expires_at"],
                          "note": "store this key now: only its SHA-256 digest is kept"}, indent=2))
    elif args.keys_command == "list":
        rows, cursor = keys.list_keys(100, None)
        while cursor:
            more, cursor = keys.list_keys(100, cursor)
            rows += more
        print(json.dumps(rows, indent=2))
    elif args.keys_command == "revoke":
        print(json.dumps(keys.revoke(args.id), indent=2))
    else:
        print(json.dumps({"assigned": keys.assign_missing_ids()}, indent=2))
    return 0


def _privacy_sweep(args: argparse.Namespace) -> int:
    """One Scan of the events table: pseudonymise the raw events of every pending erasure, and
    write the raw events of the --export-events customers to --out (one JSON line per event)."""
    import getpass
    import socket
    from pathlib import Path
    from urllib.parse import quote

    from meterbill.local import stack

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
    from meterbill.bootstrap import bootstrap

    export = list(dict.fromkeys(args.export_events or []))
    if len(export) > 50:
        raise SystemExit("meterbill: at most 50 --export-events customers per sweep")
    out = Path(args.out)
    files: dict[str, Any] = {}

    def sink(customer: str, event: dict[str, Any]) -> None:
        if customer not in files:
            out.mkdir(parents=True, exist_ok=True)
            files[customer] = (out / f"{quote(customer, safe='')}.events.jsonl").open("w", encoding="utf-8")
        files[customer].write(json.dumps(event, default=str, ensure_ascii=False) + "\n")

    who = {"via": "cli", "user": getpass.getuser(), "host": socket.gethostname()}
    try:
        result = bootstrap().privacy.sweep(who, export, sink, segments=args.segments)
    finally:
        for f in files.values():
            f.close()
    result["files"] = {c: f.name for c, f in files.items()}
    print(json.dumps(result, indent=2))
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Re-drive invoices' syncs to the integrations: every invoice with a failed sync record
    (--failed), or one invoice (--invoice). The dispatcher looks up before it creates: a re-drive
    never makes a second external invoice."""
    from meterbill.local import stack

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
        stack.create_queues(state["dynamodb_endpoint"])        # its queues' URLs (CreateQueue returns them)
    from meterbill.bootstrap import bootstrap

    if not args.failed and not args.invoice:
        raise SystemExit("meterbill sync: say --failed (every failed sync) or --invoice ID")
    sync = bootstrap().sync
    results = sync.redrive_failed(args.invoice) if args.failed else [sync.redrive(args.invoice, args.integration)]
    for result in results:
        queued = ", ".join(f"{name}: {n}" for name, n in result["queued"].items()) or "no integration enabled"
        print(f"{result['invoice']}: queued {queued}")
    if not results:
        print("no failed syncs")
    return 0


def _dunning(args: argparse.Namespace) -> int:
    """One dunning tick (what the scheduled function does): against the running local stack, else
    the configured tables (--aws). Prints the tick's summary."""
    from meterbill.local import stack

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
    from meterbill.bootstrap import bootstrap
    from meterbill.domain.instants import parse_instant

    as_of = parse_instant(args.as_of, "as_of") if args.as_of else None
    print(json.dumps(bootstrap().dunning.run(as_of), indent=2))
    return 0


def _redrive(args: argparse.Namespace) -> int:
    import boto3

    from meterbill.bootstrap import bootstrap, streams_client
    from meterbill.local.redrive import redrive

    container = bootstrap()
    sqs = boto3.client("sqs", region_name=container.settings.region, endpoint_url=args.endpoint_url)
    result = redrive(container, sqs, streams_client(container.settings), args.queue_url, args.max_messages)
    print(json.dumps(result))
    return 1 if result["failed"] else 0


def _close_worker(args: argparse.Namespace) -> int:
    """A close worker of its own process against the running local stack's close queue (what
    `meterbill run`'s worker threads do; to scale out, or to kill one mid-run)."""
    from meterbill.local import stack

    state = stack.read_state()
    if not state.get("close_queue_url"):
        raise SystemExit("no running local stack (.meterbill/local.json): start `meterbill run` first")
    stack.prepare_environment(state["dynamodb_endpoint"])
    os.environ["METERBILL_CLOSE_QUEUE_URL"] = state["close_queue_url"]
    worker = stack.close_queue_worker(state["dynamodb_endpoint"], state["close_queue_url"])
    handled = 0
    while args.max_messages is None or handled < args.max_messages:
        handled += worker.poll_once(wait_s=1)
    return 0


def _usage_parser(sub: Any) -> None:
    usage = sub.add_parser("usage", help="usage aggregates")
    usage_sub = usage.add_subparsers(dest="usage_command", required=True)
    rebuild = usage_sub.add_parser("rebuild", help="re-derive a meter's usage from the raw events (a meter created "
                                                   "after its events; repair after a stream outage); idempotent")
    rebuild.add_argument("--meter", required=True)
    rebuild.add_argument("--customer", help="only this customer (default: every customer)")
    rebuild.add_argument("--from", dest="start", help="first 15-minute bucket, RFC 3339 (default: the beginning)")
    rebuild.add_argument("--to", dest="end", help="end of the range (exclusive), RFC 3339 (default: no end)")
    rebuild.add_argument("--segments", type=int, default=4, help="parallel Scan segments (default 4)")
    rebuild.add_argument("--margin-s", type=float, default=120.0,
                         help="seconds between the rebuild's mark and now, and waited after the mark (default 120; "
                              "must exceed the longest ingest request or aggregator batch: 0 only when nothing "
                              "else runs)")
    rebuild.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")


def _usage_rebuild(args: argparse.Namespace) -> int:
    """`meterbill usage rebuild`: start (or resume) a rebuild, show its progress, print its report."""
    from meterbill.local.console import container, progress_bar
    from meterbill.services.errors import DomainError, ServiceError

    service = container(args.aws).rebuild
    try:
        rebuild = service.start(args.meter, args.customer, args.start, args.end, args.margin_s)
        labels = {"wait": "waiting for the mark (s)", "scan": "raw events scanned", "write": "usage items written"}
        with progress_bar(labels) as progress:  # stderr: stdout is the report
            report = service.run(rebuild, args.segments, progress)
    except (DomainError, ServiceError) as exc:
        print(f"meterbill: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def _portal_link(args: argparse.Namespace) -> int:
    """A signed link to one customer's portal (the same as POST /v1/customers/{id}/portal-links)."""
    from meterbill.local import stack
    from meterbill.services.errors import DomainError, ServiceError

    state = stack.read_state()
    if not os.environ.get("METERBILL_DYNAMODB_ENDPOINT") and state.get("dynamodb_endpoint") and not args.aws:
        stack.prepare_environment(state["dynamodb_endpoint"])  # the running local stack
        if state.get("api_url"):
            os.environ.setdefault("METERBILL_PORTAL_BASE_URL", state["api_url"])
    from meterbill.bootstrap import bootstrap

    try:
        print(json.dumps(bootstrap().portal.link(args.customer, args.days), indent=2))
    except (DomainError, ServiceError) as exc:
        print(f"meterbill: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meterbill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start meterbill locally (moto server + HTTP API + timers)")
    demo = sub.add_parser("demo", help="against a running local stack: meter, plan, customer, events, invoice")
    demo.add_argument("--url", help="API base URL (default: the running local stack)")
    demo.add_argument("--key", help="admin API key (default: METERBILL_ADMIN_KEY or the local stack's)")
    demo.add_argument("--events", type=int, default=3000)
    bill = sub.add_parser("billing-run", help="start a billing run over the API and follow it to the end "
                                              "(progress bar; exit status 1 if any customer failed)")
    bill.add_argument("--as-of", help="close periods that ended at or before this RFC 3339 instant (default now)")
    bill.add_argument("--url", help="API base URL (default: METERBILL_API_URL or the running local stack)")
    bill.add_argument("--api-key", help="admin API key (default: METERBILL_API_KEY or the local stack's)")
    bill.add_argument("--idempotency-key", help="the same key names the same run (a retry starts no second run)")
    bill.add_argument("--timeout", type=float, default=900, help="seconds to follow the run (default 900)")
    worker = sub.add_parser("close-worker", help="consume the running local stack's close queue in this process")
    worker.add_argument("--max-messages", type=int, help="stop after about this many messages (default: never)")
    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create an API key (printed once)")
    create.add_argument("--scope", action="append", required=True, choices=["ingest", "read", "admin"])
    create.add_argument("--name")
    create.add_argument("--expires-at", help="RFC 3339 instant after which the key is refused (default: never)")
    listing = keys_sub.add_parser("list", help="list API keys: id, name, scopes, times, status (never secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke an API key by id (refused everywhere within 5 s)")
    revoke.add_argument("id", help="the key's id, key_…")
    migrate = keys_sub.add_parser("migrate", help="give keys created before ids existed an id (scans the table once)")
    for p in (create, listing, revoke, migrate):
        p.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")
    again = sub.add_parser("redrive-stream", help="re-apply stream batches the aggregator gave up on "
                                                  "(from the on-failure SQS queue), exactly once")
    again.add_argument("--queue-url", required=True)
    again.add_argument("--max-messages", type=int, default=100)
    again.add_argument("--endpoint-url", help="SQS endpoint (tests, local stand-ins)")
    resync = sub.add_parser("sync", help="send invoices to the integrations again (failed ones, or one invoice)")
    resync.add_argument("--failed", action="store_true", help="every invoice with a failed sync (with --invoice: that one)")
    resync.add_argument("--invoice", metavar="ID", help="one invoice")
    resync.add_argument("--integration", help="only this integration (with --invoice)")
    resync.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")
    dunning = sub.add_parser("dunning", help="collections: overdue invoices and the dunning ladder")
    dunning_sub = dunning.add_subparsers(dest="dunning_command", required=True)
    tick = dunning_sub.add_parser("run", help="one dunning tick: mark overdue, send due ladder steps, flag collections")
    tick.add_argument("--as-of", help="RFC 3339 instant (default now; never in the future)")
    tick.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")
    privacy = sub.add_parser("privacy", help="data privacy: the raw-event sweep of erasures and exports")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    sweep = privacy_sub.add_parser("sweep", help="one Scan of the events table: pseudonymise the raw events of "
                                                 "every pending erasure; write the raw events of --export-events")
    sweep.add_argument("--export-events", action="append", metavar="CUSTOMER", help="customer whose raw events to write")
    sweep.add_argument("--out", default="privacy-export", help="directory for the exported events (JSON lines)")
    sweep.add_argument("--segments", type=int, default=4, help="parallel Scan segments (default 4)")
    sweep.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")
    _usage_parser(sub)
    from meterbill.local import anomalies_cli
    anomalies_cli.add_parser(sub)
    sub.add_parser("report", add_help=False, help="usage|revenue|aging reports from the API: JSON, CSV, a table, "
                   "or a chart (--out file.png|file.svg); `meterbill report -h` for the options")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:  # its own parser (meterbill.local.report): options pass through unparsed here
        from meterbill.local.report import main as report

        return report(argv[1:])
    from meterbill.local import reconcile as reconcile_cli

    reconcile_cli.add_parser(sub)
    link = sub.add_parser("portal-link", help="a signed link to a customer's portal (usage, running bill, invoices)")
    link.add_argument("customer", help="the customer's id")
    link.add_argument("--days", type=int, default=7, help="valid for this many days (default 7, at most 366)")
    link.add_argument("--aws", action="store_true", help="use AWS (ignore the local stack)")
    args = parser.parse_args(argv)
    if args.command == "portal-link":
        return _portal_link(args)
    if args.command == "reconcile":
        return reconcile_cli.reconcile(args)
    if args.command == "anomalies":
        return anomalies_cli.run(args)
    if args.command == "usage":
        return _usage_rebuild(args)
    if args.command == "redrive-stream":
        return _redrive(args)
    if args.command == "privacy":
        return _privacy_sweep(args)
    if args.command == "sync":
        return _sync(args)
    if args.command == "dunning":
        return _dunning(args)
    if args.command == "run":
        from meterbill.local.runner import run

        run()
        return 0
    if args.command == "close-worker":
        return _close_worker(args)
    if args.command == "billing-run":
        from meterbill.local.billing_run import billing_run

        return billing_run(args.url, args.api_key, args.as_of, args.idempotency_key, args.timeout)
    if args.command == "demo":
        from meterbill.local.demo import demo as run_demo

        return run_demo(args.url, args.key, args.events)
    return _keys(args)


if __name__ == "__main__":
    sys.exit(main())
