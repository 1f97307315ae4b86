"""A request's body exactly as sent (standard library only: the webhook function imports it)."""

from __future__ import annotations

import base64
from typing import Any


def raw_body(event: Any) -> bytes:
    """API Gateway's base64 decoded back to the original bytes, never re-serialized (a
    re-serialized JSON body does not verify). ``event``: the proxy event as a dict (Lambda) or
    Powertools' event object (the router)."""
    if isinstance(event, dict):
        body, encoded = event.get("body") or "", bool(event.get("isBase64Encoded"))
    else:
        body, encoded = event.body or "", bool(event.is_base64_encoded)
    return base64.b64decode(body) if encoded else body.encode("utf-8")
