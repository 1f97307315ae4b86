"""What the dispatcher will do with any sink (used by the HubSpot and Xero workflow tests): retry
Retryable / Unknown (Unknown: look up first), stop on Permanent."""

from __future__ import annotations

from typing import Any

from meterbill.integration.contract import ExternalRef, Permanent, Unknown
from meterbill.integration.keys import idempotency_key


def deliver(sink: Any, doc: dict[str, Any], customer: dict[str, Any], attempts: int = 5
            ) -> tuple[ExternalRef | None, list[Any]]:
    """Push ``doc`` through ``sink`` as the dispatcher would; the ref and every classification seen."""
    seen: list[Any] = []
    for _ in range(attempts):
        try:
            cref = sink.upsert_customer(customer)
            if seen and isinstance(seen[-1], Unknown):
                sink.find_invoice(doc, cref)     # look-up-before-create (push_invoice resumes what it finds)
            return sink.push_invoice(doc, cref, idempotency_key(sink.name, doc["id"], "push")), seen
        except Exception as exc:  # noqa: BLE001 - classified like the dispatcher does
            seen.append(sink.classify(exc))
            if isinstance(seen[-1], Permanent):
                return None, seen
    return None, seen
