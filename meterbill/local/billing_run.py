"""`meterbill billing-run`: start a billing run over the HTTP API and follow it to the end with a
progress bar (rich); the summary is printed, the exit status is 1 if any customer failed."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from meterbill.local import stack
from meterbill.local.demo import Api

POLL_S = 0.5


def follow(api: Api, run: dict[str, Any], timeout_s: float = 900, show: bool = True) -> dict[str, Any]:
    """Poll GET /v1/billing-runs/{id} until the run is finished; a progress bar on stderr while it runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("billing run [bold]{task.fields[run]}[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as progress:
        bar = progress.add_task("run", total=None, run=run["id"], detail=run["status"])
        while True:
            done = run["closed"] + run["failed"] + run["given_up"]
            progress.update(bar, total=None if run["status"] == "dispatching" else run["queued"], completed=done,
                            detail=f"{run['status']}: closed {run['closed']}, waiting {run['waiting']}, "
                                   f"failed {run['failed']}")
            if run["status"] == "finished":
                return run
            if time.monotonic() > deadline:
                raise SystemExit(f"billing run {run['id']} not finished after {timeout_s:g} s: {json.dumps(run)}")
            time.sleep(POLL_S)
            run = api.ok("GET", f"/v1/billing-runs/{run['id']}")


def api_target(url: str | None, key: str | None) -> tuple[str, str]:
    """The API to talk to: --url / METERBILL_API_URL / the running local stack's; the key likewise
    (--api-key / METERBILL_API_KEY / the admin key `meterbill run` wrote to .meterbill/local.json)."""
    state = stack.read_state()
    url = url or os.environ.get("METERBILL_API_URL") or state.get("api_url") or "http://127.0.0.1:8000"
    key = key or os.environ.get("METERBILL_API_KEY") or os.environ.get("METERBILL_ADMIN_KEY") or state.get("admin_key")
    if not key:
        raise SystemExit("no API key: pass --api-key or set METERBILL_API_KEY (an admin key)")
    return url, key


def billing_run(url: str | None, key: str | None, as_of: str | None, idempotency_key: str | None,
                timeout_s: float) -> int:
    api = Api(*api_target(url, key))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    run = api.ok("POST", "/v1/billing-runs", {"as_of": as_of} if as_of else {}, headers=headers)
    run = follow(api, run, timeout_s, show=sys.stderr.isatty() or bool(os.environ.get("METERBILL_PROGRESS")))
    print(json.dumps(run, indent=2))
    return 1 if run["failed"] else 0
