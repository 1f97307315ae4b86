"""Deterministic idempotency keys derived from meterbill ids (pure).

The same write of the same meterbill object always carries the same key, so a retried Lambda, an
SQS redelivery or a DLQ redrive reuses it and the vendor answers with the first result instead of
creating a second object. Stripe forgets keys after ~24 h: a key alone is not exactly-once, which is
why ``InvoiceSink.find_invoice`` exists. ``version`` is bumped only for a deliberate re-push.
"""

from __future__ import annotations

import hashlib
import re

MAX_KEY = 255                      # Stripe's limit; Xero's is 128, checked by its module
_PART = re.compile(r"[A-Za-z0-9_.\-]+", re.ASCII)


def idempotency_key(integration: str, object_id: str, action: str, *parts: str | int, version: int = 1) -> str:
    """``mb:<integration>:<object id>:<action>[:<part>…]:v<version>``, e.g.
    ``mb:stripe:in_3f…:create:v1`` or ``mb:stripe:in_3f…:line:17:v1``. Parts must be plain ids
    (letters, digits, ``_ . -``); a key that would exceed 255 characters is shortened with a digest
    of its full text so it stays unique and deterministic."""
    pieces = [integration, object_id, action, *(str(p) for p in parts)]
    for piece in pieces:
        if not _PART.fullmatch(piece):
            raise ValueError(f"idempotency key part {piece!r} must be letters, digits, '_', '.' or '-'")
    if type(version) is not int or version < 1:
        raise ValueError("idempotency key version must be a positive integer")
    key = ":".join(["mb", *pieces, f"v{version}"])
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:MAX_KEY - len(digest) - 1]}~{digest}"
