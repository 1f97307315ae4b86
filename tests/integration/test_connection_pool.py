"""The DynamoDB client's connection pool holds as many connections as the local stack's threads
use at once (HTTP workers + event writers + bucket writers + timers): no "Connection pool is full,
discarding connection" warnings, each a TCP connection thrown away."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meterbill import bootstrap
from meterbill.adapters import dynamo_events
from meterbill.config import Settings
from meterbill.services import aggregation


class SlowDynamo(BaseHTTPRequestHandler):
    """Answers every DynamoDB call with an empty result after a pause, so calls overlap."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.3)
        body = b'{"TableNames": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's default backlog of 5 resets connections when all arrive at once


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), SlowDynamo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_local_stack_concurrency_fits_the_pool(slow_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    client = bootstrap.dynamodb_client(Settings(dynamodb_endpoint=slow_endpoint))
    users = bootstrap.LOCAL_HTTP_WORKERS + dynamo_events.WRITERS + aggregation.WRITERS + 2  # + poller, timer
    gate = threading.Barrier(users)

    def call(_: int) -> None:
        gate.wait()
        client.list_tables()

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        with ThreadPoolExecutor(users) as pool:
            list(pool.map(call, range(users)))
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_pool_is_sized_for_the_local_http_workers() -> None:
    from meterbill.api.asgi import WORKERS

    assert bootstrap.LOCAL_HTTP_WORKERS == WORKERS
    assert bootstrap.POOL_CONNECTIONS >= WORKERS + dynamo_events.WRITERS + aggregation.WRITERS + 2
