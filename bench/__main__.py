"""`python -m bench [name ...]`: run all benchmarks (or the named ones), one figure per line."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone

from bench import use_fake_aws

ORDER = ("ingest", "writes", "aggregation", "rating", "rating_mixed", "render", "http", "concurrency",
         "cold_start", "close_cost", "numbering", "close_run", "load", "anomalies", "reports", "reconcile", "spend_check")


def main(argv: list[str]) -> int:
    names = argv or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from: {', '.join(ORDER)}", file=sys.stderr)
        return 2
    use_fake_aws()
    print(f"# meterbill bench {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} | python "
          f"{platform.python_version()} | {os.cpu_count()} cores | {platform.machine()} | "
          f"load avg {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    failed = []
    for name in names:
        try:
            importlib.import_module(f"bench.{name}").run()
        except Exception:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"# bench.{name} FAILED:", file=sys.stderr, flush=True)
            traceback.print_exc()
    print(f"# total {time.perf_counter() - t0:.0f} s | load avg {os.getloadavg()[0]:.2f}"
          + (f" | FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
