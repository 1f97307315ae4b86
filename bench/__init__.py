"""Benchmarks for meterbill (`python -m bench`, `make bench`).

Not tests: nothing here asserts a threshold. Each figure is printed as one line,
``name: value unit``, with its target in parentheses where one exists. Timings use
``time.perf_counter``; every measurement warms up first and reports the median of a
few repeats. Method and latest figures: docs/performance.md.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

# Fake credentials only: no benchmark talks to AWS (boto3 sends are short-circuited, or go
# to the local moto server), but botocore still signs every request, which needs a key.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "meterbill-bench"}


def use_fake_aws() -> None:
    """Force fake credentials in this process (never pick up a real profile or role)."""
    os.environ.update(FAKE_AWS)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        os.environ.pop(name, None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


class Timing(NamedTuple):
    median: float  # seconds per call: the figure reported
    best: float
    worst: float

    def spread(self, work: float) -> str:
        """'slowest-fastest' repeat as a rate, for the note next to a figure."""
        return f"repeats {work / self.worst:.0f}-{work / self.best:.0f}/s"


def median_seconds(fn: Callable[[], Any], *, repeats: int, number: int, warmup: int) -> Timing:
    """Median (and range) over ``repeats`` of the mean ``time.perf_counter`` wall time of one
    ``fn()`` call (``number`` calls per repeat), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        walls.append((time.perf_counter() - t0) / number)
    return Timing(statistics.median(walls), min(walls), max(walls))


def report(name: str, value: float | int | str, unit: str, target: str | None = None,
           note: str | None = None) -> None:
    if isinstance(value, float):
        text = f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 10 else f"{value:.3f}"
    else:
        text = str(value)
    extra = [f"target {target}"] if target else []
    if note:
        extra.append(note)
    suffix = f" ({'; '.join(extra)})" if extra else ""
    print(f"{name}: {text} {unit}{suffix}", flush=True)
