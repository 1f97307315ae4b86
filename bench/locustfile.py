"""Locust users for bench/load.py: each posts batches of fresh events to POST /v1/events, back to
back, with the ingest key. Anything but a 200 is a failure. Configured by bench/load.py through
the environment: METERBILL_LOAD_KEY, METERBILL_LOAD_BATCH, METERBILL_LOAD_CUSTOMERS."""

from __future__ import annotations

import os

from locust import FastHttpUser, task

from bench.http import _events


class Ingester(FastHttpUser):
    connection_timeout = 30.0
    network_timeout = 120.0

    def on_start(self) -> None:
        self.batch = int(os.environ["METERBILL_LOAD_BATCH"])
        self.who = os.environ["METERBILL_LOAD_CUSTOMERS"].split(",")
        self.auth = {"Authorization": f"Bearer {os.environ['METERBILL_LOAD_KEY']}",
                     "Content-Type": "application/json"}

    @task
    def post_events(self) -> None:
        body = _events(self.batch, self.who)
        with self.client.post("/v1/events", data=body, headers=self.auth, name="POST /v1/events",
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {(resp.text or '')[:200]}")
