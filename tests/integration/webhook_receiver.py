"""A local webhook receiver for the tests: a small HTTP server answering from a script of
(status, headers), recording each request, and verifying signatures with the standardwebhooks
library (the same one meterbill signs with), its clock being the tests' FakeClock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks.webhooks as swh
from standardwebhooks import Webhook


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[tuple[int, dict[str, str]]] = []   # answers in order; then 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def answer(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.script.extend(answers)

    def verify(self, secret: str, index: int = -1) -> Any:
        """The payload of request ``index`` as ``Webhook(secret).verify`` returns it (raises
        WebhookVerificationError when no signature of it is ``secret``'s)."""
        headers, body = self.requests[index]
        return Webhook(secret).verify(body, headers)


@contextmanager
def running(clock: Any) -> Iterator[Receiver]:
    """A receiver on a free port; the library's "now" (timestamp tolerance) is ``clock``."""

    class ClockTime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return clock().astimezone(tz or timezone.utc)

    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    saved = swh.datetime
    swh.datetime = ClockTime  # type: ignore[misc]
    try:
        yield receiver
    finally:
        swh.datetime = saved  # type: ignore[misc]
        receiver.server.shutdown()
        receiver.server.server_close()
