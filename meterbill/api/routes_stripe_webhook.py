"""``POST /v1/webhooks/stripe`` on the shared router, for the local stack (`meterbill run` serves
every route from one app). On AWS API Gateway sends this path to its own function
(``functions/stripe_webhook.py``, the more specific route wins over ``/{proxy+}``), which makes the
same call: the exact raw body and the headers to ``WebhookService.receive``. No API key: the
Stripe signature over the raw body is the authentication (``admission.PUBLIC``)."""

from __future__ import annotations

from typing import Any

from meterbill.api.raw import raw_body
from meterbill.api.routes import container, router


# Stripe's callback, not an operation of meterbill's API: left out of its OpenAPI document
@router.post("/v1/webhooks/stripe", include_in_schema=False)
def stripe_webhook() -> dict[str, Any]:
    """Verifies the ``Stripe-Signature`` header over the exact raw body (300 s tolerance),
    de-duplicates by event id and moves the invoice's payment status forward only. A bad signature
    is 400 and changes nothing; an event meterbill does not act on is 200."""
    event = router.current_event
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    return container().webhooks.receive("stripe", raw_body(event), headers)
