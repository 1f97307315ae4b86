"""Outbound webhook endpoints (create, change, disable, rotate the secret, list deliveries) and
``emit``: the one way any part of meterbill sends an event to them (docs/integrations.md,
"Outbound webhooks").

Secrets: each endpoint has its own, in Standard Webhooks format (``whsec_`` + base64 of 32 random
bytes), shown once (the create answer, the rotate answer), never in a GET, a listing or a log.
Rotation keeps the previous secret signing beside the new one for ``grace_hours`` (24 by default):
every delivery carries one ``v1,`` signature per active secret, so receivers switch when ready.
"""

from __future__ import annotations

import base64
import json
import secrets as random
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import check_id
from meterbill.domain.instants import iso
from meterbill.domain.webhooks import check_event_types, check_url, event_outbox_id, event_record
from meterbill.ports import Clock
from meterbill.services.errors import NotFound

GRACE_HOURS = 24
MAX_GRACE_HOURS = 7 * 24
SHOWN = ("id", "url", "description", "event_types", "enabled", "created_at", "updated_at", "secret_rotated_at")
DELIVERY_SHOWN = ("id", "event_id", "event_type", "event_at", "status", "status_code", "error", "attempts",
                  "last_attempt_at", "delivered_at", "created_at")


def new_secret(token: Callable[[int], bytes] = random.token_bytes) -> str:
    return "whsec_" + base64.b64encode(token(32)).decode()


def active(secrets: Sequence[Mapping[str, Any]], now: str) -> list[Mapping[str, Any]]:
    """The secrets that still sign at ``now`` (newest first): no expiry, or an expiry after now."""
    return [s for s in secrets if not s.get("expires_at") or s["expires_at"] > now]


def shown(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    return {k: endpoint.get(k) for k in SHOWN if k != "description" or endpoint.get(k) is not None}


class WebhookEndpoints:
    def __init__(self, store: Any, clock: Clock, token: Callable[[int], bytes] = random.token_bytes) -> None:
        self._store = store
        self._clock = clock
        self._token = token

    def put(self, endpoint_id: str, url: str, event_types: Sequence[str], enabled: bool = True,
            description: str | None = None) -> tuple[dict[str, Any], bool]:
        """Create or change an endpoint: (its view, created). A new endpoint's view carries its
        ``secret``, once; a change never does (the secret stays)."""
        check_id(endpoint_id, "id")
        fields = {"url": check_url(url), "event_types": check_event_types(event_types), "enabled": bool(enabled),
                  "description": description, "updated_at": iso(self._clock())}
        if self._store.get_endpoint(endpoint_id) is None:
            secret = new_secret(self._token)
            doc = {"id": endpoint_id, **fields, "created_at": fields["updated_at"]}
            if self._store.create_endpoint(doc, [{"secret": secret, "created_at": doc["created_at"]}]):
                return {**shown(doc), "secret": secret}, True
        return shown(self._store.update_endpoint(endpoint_id, fields)), False

    def get(self, endpoint_id: str) -> dict[str, Any]:
        found = self._store.get_endpoint(endpoint_id)
        if found is None:
            raise NotFound(f"webhook endpoint '{endpoint_id}' does not exist", field="id")
        return shown(found)

    def list_endpoints(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        items, nxt = self._store.list_endpoints(limit, cursor)
        return [shown(i) for i in items], nxt

    def disable(self, endpoint_id: str) -> dict[str, Any]:
        """DELETE: the endpoint stops receiving (kept, with its deliveries; PUT enables it again)."""
        self.get(endpoint_id)
        return shown(self._store.update_endpoint(endpoint_id, {"enabled": False, "updated_at": iso(self._clock())}))

    def rotate_secret(self, endpoint_id: str, grace_hours: int = GRACE_HOURS) -> dict[str, Any]:
        """A new secret (answered once); the current ones keep signing for ``grace_hours`` more
        (0: the old secret stops now)."""
        if type(grace_hours) is not int or not 0 <= grace_hours <= MAX_GRACE_HOURS:
            raise InvalidField("grace_hours", f"must be a whole number of hours from 0 to {MAX_GRACE_HOURS}")
        self.get(endpoint_id)
        now = self._clock()
        until = iso(now + timedelta(hours=grace_hours))
        kept = [{**s, "expires_at": min(s.get("expires_at") or until, until)}
                for s in active(self._store.get_endpoint_secrets(endpoint_id), iso(now))]
        secret = new_secret(self._token)
        self._store.put_endpoint_secrets(endpoint_id, [{"secret": secret, "created_at": iso(now)},
                                                       *(s for s in kept if s["expires_at"] > iso(now))])
        view = shown(self._store.update_endpoint(endpoint_id, {"secret_rotated_at": iso(now)}))
        return {**view, "secret": secret, "previous_secret_expires_at": until if kept else None}

    def deliveries(self, endpoint_id: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self.get(endpoint_id)
        items, nxt = self._store.list_deliveries(endpoint_id, limit, cursor)
        return [{k: i.get(k) for k in DELIVERY_SHOWN} for i in items], nxt

    def emit(self, event_type: str, payload: Mapping[str, Any], dedupe_key: str) -> str:
        """Send an event to every enabled endpoint subscribed to ``event_type``: its outbox record,
        put once per (type, ``dedupe_key``) — a second call with the same key sends nothing more.
        Returns the event id. E.g. ``emit("invoice.overdue", {"invoice": {...}}, invoice_id)``."""
        try:
            data = json.loads(json.dumps(dict(payload), default=_exact), parse_float=Decimal)
        except (TypeError, ValueError) as exc:
            raise InvalidField("payload", f"must be JSON: {exc}") from None
        record = event_record(event_type, dedupe_key, data)
        self._store.put_event_outbox(event_outbox_id(record), iso(self._clock()), record)
        return str(record["event_id"])


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)      # amounts stay exact text, never floats
    raise TypeError(f"{type(value).__name__} is not JSON")
