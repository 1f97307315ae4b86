"""Log lines of the Lambda entry points (functions/*.py, bootstrap.lambda_logger): bounded in size
and labelled with the invocation that logged them, also when the local stack runs the API, the
aggregator and the close timer in one process."""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

from meterbill.bootstrap import BoundedFormatter, bounded_traceback, label_thread, lambda_logger
from meterbill.local.stack import LambdaContext

HUGE = "9" * 1000


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def fail_deep(depth: int) -> None:
    if depth:
        fail_deep(depth - 1)
    raise ValueError(f"cannot store {HUGE}: {HUGE} is too long")


def test_a_500_logged_while_another_function_runs_is_bounded_and_not_labelled_with_it() -> None:
    buf = io.StringIO()
    logger = lambda_logger(service="mb-logtest-1", handler=logging.StreamHandler(buf))
    inside, release = threading.Event(), threading.Event()

    @logger.inject_lambda_context
    def aggregator(event: Any, context: Any) -> None:
        logger.info("stream batch applied")
        inside.set()
        release.wait(5)

    worker = threading.Thread(target=aggregator, args=({}, LambdaContext("aggregator")))
    worker.start()
    assert inside.wait(5)
    results: list[str] = []

    def http_request(label: str | None) -> None:
        if label:
            label_thread(label)
        try:
            fail_deep(30)
        except ValueError:
            logging.getLogger("mb-logtest-1.api.errors").exception("unhandled error")
        results.append("done")

    for label in (None, "api"):
        t = threading.Thread(target=http_request, args=(label,))
        t.start()
        t.join()
    release.set()
    worker.join()

    applied, unlabelled, api = lines(buf)
    assert applied["function_name"] == "aggregator" and applied["message"] == "stream batch applied"
    assert applied["function_arn"].endswith(":function:aggregator")
    assert "function_name" not in unlabelled           # not the aggregator's, which ran meanwhile
    assert api["function_name"] == "api"
    for line in (unlabelled, api):
        raw = json.dumps(line)
        assert len(raw) < 6_000, len(raw)
        assert raw.count("9" * 200) == 1               # the value once, cut: no stack_trace repeating it
        assert "stack_trace" not in line
        assert line["exception"].splitlines()[-1].startswith("ValueError: cannot store 999")
        assert "fail_deep" in line["exception"]         # the innermost frames are kept
        assert "^^^" not in line["exception"]


def test_each_local_invocation_has_its_own_request_id() -> None:
    a, b = LambdaContext("close_periods"), LambdaContext("close_periods")
    assert a.aws_request_id != b.aws_request_id
    assert a.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:close_periods"


def test_long_messages_and_extras_are_cut() -> None:
    buf = io.StringIO()
    logger = lambda_logger(service="mb-logtest-2", handler=logging.StreamHandler(buf))
    logger.warning("value " + HUGE * 5, extra={"detail": {"v": HUGE * 3}})
    (line,) = lines(buf)
    assert len(line["message"]) < 1_100 and line["message"].endswith("more characters)")
    assert len(line["detail"]["v"]) < 1_100


def test_bounded_traceback_keeps_the_exception_and_innermost_frames() -> None:
    text = "Traceback (most recent call last):\n" + "".join(
        f'  File "/x/mod.py", line {i}, in f{i}\n    call_{i}()\n    ^^^^^^^^\n' for i in range(200)) + \
        "ValueError: " + HUGE
    out = bounded_traceback(text)
    assert len(out) <= 4_100
    assert out.startswith("Traceback") and "lines of outer frames left out" in out
    assert "in f199" in out and "in f0\n" not in out
    assert out.splitlines()[-1].startswith("ValueError: 999") and out.endswith("more characters)")


def test_every_lambda_entry_point_uses_the_bounded_formatter() -> None:
    from functions import aggregator, api, close_periods, ingest

    for module in (aggregator, api, close_periods, ingest):
        assert isinstance(module.logger.registered_formatter, BoundedFormatter), module.__name__
