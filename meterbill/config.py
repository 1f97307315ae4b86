"""Settings, read from the environment in one place (the composition root calls this)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    events_table: str = "meterbill-events"
    billing_table: str = "meterbill-billing"
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None   # None on AWS; moto's server URL locally
    invoice_prefix: str = "INV-"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            events_table=env.get("METERBILL_EVENTS_TABLE", cls.events_table),
            billing_table=env.get("METERBILL_BILLING_TABLE", cls.billing_table),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region,
            dynamodb_endpoint=env.get("METERBILL_DYNAMODB_ENDPOINT") or None,
            invoice_prefix=env.get("METERBILL_INVOICE_PREFIX", cls.invoice_prefix),
        )
